package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"halb/internal/lab/site"
)

// rows returns the matrix in the order it runs. lb-a is master of web-a
// (priority 150), lb-b its backup (priority 100).
func rows() []row {
	return []row{
		{
			fault:             "kill -9 of the master",
			promise:           fmt.Sprintf("backup is master within 3×advert+skew (%s), long-lived connections kept", secs(bound)),
			keepalived:        "same bound (RFC 5798 master-down timer)",
			run:               killMaster,
			measureKeepalived: kaTakeover(syscall.SIGKILL),
		},
		{
			fault:             "SIGTERM of the master",
			promise:           fmt.Sprintf("backup is master within its skew (%s) + %s", secs(skew), secs(slack)),
			keepalived:        "a priority-0 advert on shutdown: the backup takes over after its skew; VIPs and IPVS rules removed (unless --dont-release-vrrp/-ipvs)",
			run:               termMaster,
			measureKeepalived: kaTakeover(syscall.SIGTERM),
		},
		{
			fault:      "master's link down, then up",
			promise:    fmt.Sprintf("backup is master within %s; after the link returns one master per instance within 3 adverts", secs(bound)),
			keepalived: "same timers; with the interface tracked the node goes FAULT and drops its VIPs",
			run:        linkDown,
		},
		{
			fault:             "master frozen 5 s (SIGSTOP, SIGCONT)",
			promise:           "backup takes over; after SIGCONT one master within 3 adverts and at most 2 state changes per node (no second flap)",
			keepalived:        "the thawed master adverts at once and the backup yields",
			run:               freezeMaster,
			measureKeepalived: kaFreeze,
		},
		{
			fault:      "halb restart on the master under traffic",
			promise:    "0 failed connections, long-lived connections kept (the data plane stays in the kernel across the restart)",
			keepalived: "a restart releases VIPs and removes IPVS services unless started with --dont-release-vrrp/--dont-release-ipvs",
			run:        restartUnderTraffic,
		},
		{
			fault:      "kill -9 and restart with the state directory lost",
			promise:    "halb adopts what it finds: no duplicate rules, no stray address or process",
			keepalived: "no state directory; lvs_flush empties all of IPVS at start, not only its own services",
			run:        restartStateLost,
		},
		{
			fault:             "VRRP path partitioned (proto 112 dropped on the backup), then healed",
			promise:           "after the heal one master per instance within 3 adverts, and clients reach the VIP at that master within 3 adverts",
			keepalived:        "the master answers each advert of a lower-priority master with gratuitous ARPs (garp_lower_prio_repeat; seen on the wire here with the defaults)",
			run:               partition,
			measureKeepalived: kaPartition,
		},
		{
			fault:             "20 % of adverts lost (random)",
			promise:           "a flap needs 3 adverts lost in a row (0.8 % a second at 20 %): at most 1 flap in 15 s",
			keepalived:        "same RFC timers, so the same flap rate",
			run:               advertLoss(20, 1),
			measureKeepalived: kaAdvertLoss(20),
		},
		{
			fault:             "malformed configurations on SIGHUP",
			promise:           "each refused and logged; status and kernel state unchanged",
			keepalived:        "without reload_check_config a reload of a file with errors may stop keepalived, even in a restart loop (keepalived.conf(5)); with it the reload is refused",
			run:               malformedReload,
			measureKeepalived: kaMalformed,
		},
		{
			fault:      "1,000 clients on the status socket (garbage, silence, 10 MB requests)",
			promise:    "halb status answers within 1 s throughout; threads and goroutines back to their level after, memory grows less than 64 MB",
			keepalived: "no status socket: state is dumped on SIGUSR1/SIGUSR2 to files, or read over SNMP/D-Bus",
			run:        statusFlood,
		},
		{
			fault:             "adverts from an unknown source in unicast mode",
			promise:           "ignored (no state change) and each counted as \"unknown source\"",
			keepalived:        "accepted from any source unless check_unicast_src (or a TTL range) is set, off by default",
			run:               unknownSource,
			measureKeepalived: kaUnknownSource,
		},
		{
			fault:      "halb's nftables table deleted by hand",
			promise:    "restored within 1 s and reported (a dataplane_restored event)",
			keepalived: "its documentation names no watch of IPVS or nftables for changes made by others",
			run:        nftTableDeleted,
		},
		{
			fault:             "a VIP deleted by hand on the master",
			promise:           "put back within one advert interval",
			keepalived:        "keepalived 2.2.7 (VRRP only, on this switch)",
			run:               vipDeleted,
			measureKeepalived: kaVIPDeleted,
		},
		{
			fault:      "SIGHUP storm: 50 reloads in 10 s, two configs alternating, under traffic",
			promise:    "0 failed connections, long-lived connections kept, final state = last config",
			keepalived: "each reload re-reads the configuration and applies the difference to IPVS",
			run:        reloadStorm,
		},
		{
			fault:      "state directory read-only at start",
			promise:    "halb starts and runs, and says so where it needs the directory",
			keepalived: "no state directory",
			run:        readOnlyState,
		},
		{
			fault: "50 % of adverts lost (random)",
			promise: fmt.Sprintf("a flap needs 3 adverts lost in a row (6.25 %% of adverts at 50 %%, about 1 flap in %v): at most %d flaps in %v (more is under 0.5 %% likely)",
				lossWindow, heavyLossFlaps, lossWindow),
			keepalived:        "same RFC timers, so the same flap rate",
			run:               advertLoss(50, heavyLossFlaps),
			measureKeepalived: kaAdvertLoss(50),
		},
		{
			fault:             "adverts for our VRID with priority 254 and another address list",
			promise:           "dropped and counted as \"address list\" on both nodes, no state change, clients reach the VIP; at priority 255 (the address owner) obeyed as RFC 5798 §7.1 says: the master steps down",
			keepalived:        "drops an advert listing another number of addresses whatever its priority, the owner's too (counted as addr_list_err)",
			run:               otherAddressList,
			measureKeepalived: kaOtherAddressList,
		},
		{
			fault:             "a third VRRP speaker for our VRID with another interval, then another version",
			promise:           "one master throughout, no state change; each mismatch warned once in the log and recorded once as a notice event (once in halb's life)",
			keepalived:        "VRRPv3: a backup logs \"advertisement interval mismatch\" for every advert of its master at another interval (a lower priority's are discarded first); VRRPv2 at another interval and another version: logged and dropped, every time",
			run:               foreignSpeaker,
			measureKeepalived: kaForeignSpeaker,
		},
		{
			fault:      fmt.Sprintf("a flood of 100,000 adverts/s for %v at the master (bad checksum, other version, other address list, truncated)", floodWindow),
			promise:    "no false takeover: halb keeps its state (both instances, both nodes: lb-a still hears lb-b's adverts, its socket filtering out in the kernel what cannot be an advert for it) and uses under one core; the adverts that pass the filter are counted as rejected",
			keepalived: "reads and checks every packet in its one VRRP process, logging most rejects at LOG_INFO",
			run:        advertFlood,
		},
		{
			fault:      "adverts duplicated and reordered (each multicast advert repeated at once and again after the next one)",
			promise:    "no flap: one master per instance, no state change",
			keepalived: "adverts carry no sequence number in either version: a repeated or late advert of the master only restarts the backup's timer, as in halb (RFC 5798 §6.4)",
			run:        duplicatedAdverts,
		},
		{
			fault:      "a webhook that never answers and an SMTP server that hangs after its greeting, on the node that takes over",
			promise:    fmt.Sprintf("failover within %s as without them; the webhook given up at its timeout; messages beyond a notifier's queue dropped and counted; goroutines bounded; status answers", secs(bound)),
			keepalived: "smtp_connect_timeout (30 s default) bounds its SMTP connection; notify scripts run in child processes, and a script that hangs is killed after script timeout only when enabled",
			run:        stalledNotifiers,
		},
		{
			fault:             "upgrade on a live node under traffic: the previous release's binary → the new one",
			promise:           "0 failed connections, long-lived connections kept; the new halb adopts the old one's nftables rules with 0 changes, or logs what a format change made it write again",
			keepalived:        "a package upgrade restarts keepalived: SIGTERM releases the VIPs (and IPVS services unless --dont-release-ipvs), the backup takes over and the upgraded node takes them back",
			run:               upgradeLive,
			measureKeepalived: kaRestart,
		},
		// Host interference and resources (rows_host.go).
		{
			fault:      "another nftables table using mark bits (halb's mark mask leaves them)",
			promise:    "packets leave halb's marking chain with halb's mark and the other table's bit; halb's watch leaves the other table alone (no restore)",
			keepalived: "sets no packet marks: fwmark services match the marks of the administrator's own rules, which keep other bits only if written to",
			run:        foreignMarks,
		},
		{
			fault:      "ulimit -n reached by halb (RLIMIT_NOFILE lowered to what it has open, 5 s; its nftables table deleted meanwhile)",
			promise:    "halb lives, no VRRP state change on either node, no server put down for another reason than \"no file descriptor left\"; the data plane error names the open-file limit and the table is back within its retry (8 s) once the limit is raised",
			keepalived: "not measured here",
			run:        fdLimit,
		},
		{
			fault:      "the netlink socket overrun (ENOBUFS): halb stalled while 5,000 nftables changes and its table's deletion are committed",
			promise:    "halb notices the overrun (logged), reads its tables in full and restores the table within 1 s of running again",
			keepalived: "watches no nftables table; the buffer of its netlink monitor socket (links, addresses) is set by vrrp_netlink_monitor_rcv_bufs",
			run:        netlinkOverrun,
		},
		{
			fault:      "the netlink socket overrun (ENOBUFS): halb stalled while 3,000 addresses are added",
			promise:    "the link and address watches go on (subscribed again, what exists read in full): a VIP deleted after it is back within one advert interval",
			keepalived: "not measured here",
			run:        addressOverrun,
		},
		{
			fault:      "an IPVS service deleted by hand (ipvsadm -D), then a real server's weight edited (ipvsadm -e)",
			promise:    fmt.Sprintf("each put back within %s and reported (a dataplane_restored event)", secs(ipvsRestoreBound)),
			keepalived: "its documentation names no watch of IPVS for changes made by others (its checkers change IPVS only on their own results); not measured here",
			run:        ipvsByHand,
			dataplane:  "ipvs",
		},
		// Data-plane continuity (rows_continuity.go).
		{
			fault:      "a backend removed from a pool and returned, under traffic (web3 out of www by a reload on both nodes, then back)",
			promise:    "connections to the other backends all kept; no new connection reaches the removed backend while it is out; new connections reach it again after its return (its own connections are not promised: its flow set goes with it, so they move to another backend, which resets them)",
			keepalived: "a reload removes the real server from IPVS and adds it back; IPVS keeps the other servers' connections in its table; not measured here",
			run:        poolChange,
		},
		{
			fault:      "persistence pins kept across a halb restart (24 clients pinned over HTTPS while web3 is out, web3 returned, halb restarted on the master)",
			promise:    "every client reaches the backend it was pinned to, after web3's return and after the restart",
			keepalived: "a restart with --dont-release-ipvs keeps IPVS's persistence templates in the kernel; without it the services, and their templates, are removed; not measured here",
			run:        pinsRestart,
		},
	}
}

func killMaster(ctx context.Context, e *env) (string, bool, error) {
	text, took, broken, err := signalMaster(ctx, e, syscall.SIGKILL)
	if err != nil {
		return "", false, err
	}
	return text, took <= bound+slack && broken == 0, nil
}

func termMaster(ctx context.Context, e *env) (string, bool, error) {
	text, took, _, err := signalMaster(ctx, e, syscall.SIGTERM)
	if err != nil {
		return "", false, err
	}
	return text, took <= skew+slack, nil
}

// signalMaster sends sig to lb-a, the master, under traffic and waits for
// lb-b to take over. It reports the outcome, how long the takeover took and
// how many long-lived connections broke.
func signalMaster(ctx context.Context, e *env, sig syscall.Signal) (string, time.Duration, int, error) {
	g, stop := e.traffic(ctx)
	defer stop()
	if err := sleep(ctx, 1500*time.Millisecond); err != nil {
		return "", 0, 0, err
	}
	from := time.Now()
	if err := e.s.LBs[0].Signal(sig, 5*time.Second); err != nil {
		return "", 0, 0, err
	}
	at, err := e.waitState(ctx, 1, "web-a", "MASTER", from, bound+5*time.Second)
	if err != nil {
		return "", 0, 0, err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return "", 0, 0, err
	}
	text, _ := trafficReport(g, from)
	_, broken, _ := g.LongLived()
	took := at.Sub(from)
	return fmt.Sprintf("lb-b master after %s; %s", secs(took), text), took, broken, nil
}

func linkDown(ctx context.Context, e *env) (string, bool, error) {
	from := time.Now()
	if err := e.s.Cut(0, true); err != nil {
		return "", false, err
	}
	at, err := e.waitState(ctx, 1, "web-a", "MASTER", from, bound+5*time.Second)
	if err != nil {
		return "", false, err
	}
	if err := sleep(ctx, time.Second); err != nil {
		return "", false, err
	}
	healed := time.Now()
	if err := e.s.Cut(0, false); err != nil {
		return "", false, err
	}
	one, err := e.waitOneMaster(ctx, healed, 3*advert+5*time.Second)
	if err != nil {
		return "", false, err
	}
	took := at.Sub(from)
	return fmt.Sprintf("lb-b master after %s; one master %s after the link returned", secs(took), secs(one)),
		took <= bound+slack && one <= 3*advert+slack, nil
}

func freezeMaster(ctx context.Context, e *env) (string, bool, error) {
	lbA := e.s.LBs[0]
	from := time.Now()
	if err := lbA.Notify(syscall.SIGSTOP); err != nil {
		return "", false, err
	}
	at, err := e.waitState(ctx, 1, "web-a", "MASTER", from, bound+5*time.Second)
	if err != nil {
		_ = lbA.Notify(syscall.SIGCONT) // the wait's error is the one to report
		return "", false, err
	}
	if err := sleep(ctx, time.Until(from.Add(5*time.Second))); err != nil {
		return "", false, err
	}
	thawed := time.Now()
	if err := lbA.Notify(syscall.SIGCONT); err != nil {
		return "", false, err
	}
	one, err := e.waitOneMaster(ctx, thawed, 3*advert+5*time.Second)
	if err != nil {
		return "", false, err
	}
	// Let a second flap show, if there is one.
	if err := sleep(ctx, 3*advert); err != nil {
		return "", false, err
	}
	var changes [2]int
	for i := range changes {
		trs, err := e.transitions(ctx, i, "web-a", from)
		if err != nil {
			return "", false, err
		}
		changes[i] = len(trs)
	}
	took := at.Sub(from)
	return fmt.Sprintf("lb-b master after %s; one master %s after SIGCONT; state changes lb-a %d, lb-b %d", secs(took), secs(one), changes[0], changes[1]),
		took <= bound+slack && one <= 3*advert+slack && changes[0] <= 2 && changes[1] <= 2, nil
}

func restartUnderTraffic(ctx context.Context, e *env) (string, bool, error) {
	g, stop := e.traffic(ctx)
	defer stop()
	if err := sleep(ctx, 1500*time.Millisecond); err != nil {
		return "", false, err
	}
	from := time.Now()
	if err := e.s.LBs[0].Signal(syscall.SIGTERM, 5*time.Second); err != nil {
		return "", false, err
	}
	if err := e.s.StartLB(ctx, 0); err != nil {
		return "", false, err
	}
	at, err := e.waitState(ctx, 0, "web-a", "MASTER", from, 3*bound)
	if err != nil {
		return "", false, err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return "", false, err
	}
	text, ok := trafficReport(g, from)
	return fmt.Sprintf("restarted and master again after %s; %s", secs(at.Sub(from)), text), ok, nil
}

func restartStateLost(ctx context.Context, e *env) (string, bool, error) {
	if err := e.s.LBs[0].Signal(syscall.SIGKILL, 5*time.Second); err != nil {
		return "", false, err
	}
	state := filepath.Join(e.opts.Dir, site.LBNames[0], "state")
	if err := os.RemoveAll(state); err != nil {
		return "", false, fmt.Errorf("remove the state directory: %w", err)
	}
	if err := e.s.StartLB(ctx, 0); err != nil {
		return "", false, err
	}
	if err := e.settle(ctx); err != nil {
		return "", false, err
	}
	left := e.leftovers(ctx)
	if len(left) > 0 {
		return strings.Join(left, "; "), false, nil
	}
	return "rules, addresses and processes as before the crash", true, nil
}

// garpSecondBurst is when a new master repeats its announcements (the
// default of vrrp.instances[].garp.second_burst).
const garpSecondBurst = 5 * time.Second

func partition(ctx context.Context, e *env) (string, bool, error) {
	// lb-a's announcements of its last transition must be over, or its
	// second burst could bring the client back by chance.
	st, err := e.api[0].Status(ctx)
	if err != nil {
		return "", false, err
	}
	for _, in := range st.VRRP {
		if in.Name == "web-a" {
			if err := sleep(ctx, time.Until(in.Since.Add(garpSecondBurst+time.Second))); err != nil {
				return "", false, err
			}
		}
	}
	g, stop := e.traffic(ctx)
	defer stop()
	from := time.Now()
	if err := addFault(e.s.LBs[1].Host, "ip protocol vrrp drop"); err != nil {
		return "", false, err
	}
	if _, err := e.waitState(ctx, 1, "web-a", "MASTER", from, bound+5*time.Second); err != nil {
		return "", false, err
	}
	// The backup, now master too, announces the VIPs and the client
	// moves to it. The worst moment to heal is while the client is there.
	movedAt := time.Duration(-1)
	split := time.Now()
	for time.Since(split) < 3*time.Second {
		if e.clientMAC(site.VIPsA[0]) == e.mac[1] {
			movedAt = time.Since(split)
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return "", false, err
		}
	}
	healed := time.Now()
	dropFault(e.s.LBs[1].Host)
	one, err := e.waitOneMaster(ctx, healed, 3*advert+5*time.Second)
	if err != nil {
		return "", false, err
	}
	// The client sends to 192.0.2.9 all along; how long until it is at
	// lb-a, the one master left?
	limit := 3*advert + slack
	var reached time.Duration = -1
	for time.Since(healed) < 2*limit {
		if e.clientMAC(site.VIPsA[0]) == e.mac[0] {
			reached = time.Since(healed)
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return "", false, err
		}
	}
	text, _ := trafficReport(g, healed)
	at := "still at lb-b's MAC " + secs(2*limit) + " after the heal"
	if reached >= 0 {
		at = "at lb-a's MAC " + secs(reached) + " after the heal"
	}
	moved := fmt.Sprintf("healed with the client at lb-b's MAC (%s after the split)", secs(movedAt))
	if movedAt < 0 {
		moved = "the client stayed at lb-a's MAC during the partition"
	}
	return fmt.Sprintf("one master %s after the heal; %s; client %s; %s", secs(one), moved, at, text),
		one <= 3*advert+slack && reached >= 0 && reached <= limit, nil
}

// lossRule counts the adverts a node receives and drops pct % of them,
// at random (lossReport renders its counters).
func lossRule(pct int) string {
	return fmt.Sprintf("ip protocol vrrp counter\n  ip protocol vrrp numgen random mod 100 < %d counter drop", pct)
}

// lossReport renders the counters of lossRule.
func lossReport(counts []string) string {
	if len(counts) != 2 {
		return fmt.Sprintf("adverts counted %v", counts)
	}
	return fmt.Sprintf("%s of %s adverts dropped", counts[1], counts[0])
}

// lossWindow is how long the adverts are lost.
const lossWindow = 15 * time.Second

// advertLoss loses pct % of the adverts the backup receives for
// lossWindow; the promise is at most maxFlaps times master.
func advertLoss(pct, maxFlaps int) func(context.Context, *env) (string, bool, error) {
	return func(ctx context.Context, e *env) (string, bool, error) {
		from := time.Now()
		if err := addFault(e.s.LBs[1].Host, lossRule(pct)); err != nil {
			return "", false, err
		}
		if err := sleep(ctx, lossWindow); err != nil {
			return "", false, err
		}
		dropped := dropFault(e.s.LBs[1].Host)
		trs, err := e.transitions(ctx, 1, "web-a", from)
		if err != nil {
			return "", false, err
		}
		flaps := 0
		for _, tr := range trs {
			if tr.New == "MASTER" && tr.Old != "MASTER" {
				flaps++
			}
		}
		return fmt.Sprintf("%d flaps of the backup in %v; %s", flaps, lossWindow, lossReport(dropped)), flaps <= maxFlaps, nil
	}
}

// snapshot is what a refused reload must leave as it was.
func snapshot(ctx context.Context, e *env, i int) (string, error) {
	st, err := e.api[i].Status(ctx)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "reloaded %v\n", st.Reloaded)
	for _, in := range st.VRRP {
		fmt.Fprintf(&b, "%s %s %d %v\n", in.Name, in.State, in.Priority, in.VIPs)
	}
	for _, svc := range st.Services {
		fmt.Fprintf(&b, "%s %s %d %s", svc.Name, svc.VIP, svc.Port, svc.Scheduler)
		for _, srv := range svc.Servers {
			fmt.Fprintf(&b, " %s/%d", srv.Address, srv.Weight)
		}
		b.WriteString("\n")
	}
	k, err := e.kernel(i)
	if err != nil {
		return "", err
	}
	b.WriteString(strings.Join(k.ruleset, "\n") + strings.Join(k.addrs, "\n"))
	return b.String(), nil
}

func malformedReload(ctx context.Context, e *env) (string, bool, error) {
	lb := e.s.LBs[0]
	good := string(e.config[0])
	bad := []string{
		good + "\nbogus_key: 1\n",                        // unknown key
		strings.Replace(good, "vrid: 9", "vrid: 300", 1), // out of range
		good + "\nservices: [\n",                         // not YAML
		strings.Replace(good, "198.51.100.13, weight: 1", "198.51.100.13, weight: -5", 1),
	}
	before, err := snapshot(ctx, e, 0)
	if err != nil {
		return "", false, err
	}
	refused, changed := 0, 0
	for _, text := range bad {
		n := strings.Count(readFile(lb.Log), "reload refused")
		if err := os.WriteFile(lb.Config, []byte(text), 0o644); err != nil {
			return "", false, err
		}
		if err := lb.Notify(syscall.SIGHUP); err != nil {
			return "", false, err
		}
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(readFile(lb.Log), "reload refused") == n && time.Now().Before(deadline) {
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return "", false, err
			}
		}
		if strings.Count(readFile(lb.Log), "reload refused") > n {
			refused++
		}
		after, err := snapshot(ctx, e, 0)
		if err != nil {
			return "", false, err
		}
		if after != before {
			changed++
		}
	}
	if err := os.WriteFile(lb.Config, e.config[0], 0o644); err != nil {
		return "", false, err
	}
	return fmt.Sprintf("%d/%d refused and logged; status or kernel changed after %d", refused, len(bad), changed),
		refused == len(bad) && changed == 0, nil
}

func readFile(path string) string {
	data, _ := os.ReadFile(path) // a missing log reads as empty
	return string(data)
}
