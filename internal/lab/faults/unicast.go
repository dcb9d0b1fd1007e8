package faults

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"

	"halb/internal/lab/site"
	"halb/internal/vrrp/packet"
)

// unicastConfig turns node i's configuration to unicast VRRP: every
// instance sends from the node's address to the other node's.
func unicastConfig(config []byte, i int) string {
	self := strings.Split(site.LBAddrs[i][0], "/")[0]
	peer := strings.Split(site.LBAddrs[1-i][0], "/")[0]
	return strings.ReplaceAll(string(config), "      advert_interval: 1s\n",
		fmt.Sprintf("      advert_interval: 1s\n      unicast_source: %s\n      unicast_peers: [%s]\n", self, peer))
}

// forgedAdverts is how many adverts the unknown source sends.
const forgedAdverts = 20

func unknownSource(ctx context.Context, e *env) (string, bool, error) {
	for i, lb := range e.s.LBs {
		text := unicastConfig(e.config[i], i)
		if !strings.Contains(text, "unicast_peers") {
			return "", false, fmt.Errorf("%s's configuration has no instance to turn to unicast", lb.Name)
		}
		if err := os.WriteFile(lb.Config, []byte(text), 0o644); err != nil {
			return "", false, err
		}
		if err := lb.Notify(syscall.SIGHUP); err != nil {
			return "", false, err
		}
	}
	if err := e.settle(ctx); err != nil {
		return "", false, fmt.Errorf("after the reload to unicast: %w", err)
	}
	before, err := e.rejected(ctx, 0, "web-a", "unknown source")
	if err != nil {
		return "", false, err
	}
	from := time.Now()
	// The client claims web-a with the highest priority, to its master:
	// were it believed, lb-a would step down.
	dst := netip.MustParseAddr(strings.Split(site.LBAddrs[0][0], "/")[0])
	if err := e.claim(ctx, 9, site.VIPsA[0], dst); err != nil {
		return "", false, err
	}
	after, err := e.rejected(ctx, 0, "web-a", "unknown source")
	if err != nil {
		return "", false, err
	}
	trs, err := e.transitions(ctx, 0, "web-a", from)
	if err != nil {
		return "", false, err
	}
	counted := after - before
	return fmt.Sprintf("%d forged adverts (priority 255) sent to the master in 2 s: %d counted as unknown source, %d state changes", forgedAdverts, counted, len(trs)),
		counted == forgedAdverts && len(trs) == 0, nil
}

// claim sends forgedAdverts adverts from the client to dst over 2 s, each
// claiming vrid and vip with priority 255, then waits an advert interval.
func (e *env) claim(ctx context.Context, vrid uint8, vip string, dst netip.Addr) error {
	a := packet.Advert{Version: 3, VRID: vrid, Priority: 255, Interval: advert, Addrs: []netip.Addr{netip.MustParseAddr(vip)}}
	msg, err := a.Marshal(netip.MustParseAddr(site.ClientIP), dst, packet.ChecksumPseudoHeader)
	if err != nil {
		return err
	}
	var c net.PacketConn
	if err := e.s.Client.Do(func() (err error) {
		c, err = net.ListenPacket("ip4:112", "0.0.0.0")
		return err
	}); err != nil {
		return fmt.Errorf("client: open a VRRP socket: %w", err)
	}
	defer c.Close()
	p := ipv4.NewPacketConn(c)
	if err := p.SetTTL(255); err != nil {
		return fmt.Errorf("client: set TTL: %w", err)
	}
	for range forgedAdverts {
		if _, err := p.WriteTo(msg, nil, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return fmt.Errorf("client: send an advert: %w", err)
		}
		if err := sleep(ctx, 2*time.Second/forgedAdverts); err != nil {
			return err
		}
	}
	return sleep(ctx, advert)
}

// rejected reads halb_vrrp_adverts_rejected_total of an instance and a
// reason from node i's metrics.
func (e *env) rejected(ctx context.Context, i int, instance, reason string) (int, error) {
	body, err := e.metrics(ctx, i)
	if err != nil {
		return 0, err
	}
	prefix := "halb_vrrp_adverts_rejected_total{"
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, `instance="`+instance+`"`) && strings.Contains(line, `reason="`+reason+`"`) {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return int(v), err
		}
	}
	return 0, nil // not counted yet
}

// metrics fetches node i's Prometheus metrics.
func (e *env) metrics(ctx context.Context, i int) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: e.s.LBs[i].Host.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9470/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: metrics: %w", e.s.LBs[i].Name, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		return "", fmt.Errorf("%s: metrics: %w", e.s.LBs[i].Name, err)
	}
	return b.String(), nil
}
