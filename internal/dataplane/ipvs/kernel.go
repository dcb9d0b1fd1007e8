package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"

	cfipvs "github.com/cloudflare/ipvs"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// kernel is the part of IPVS's generic netlink interface the data plane
// uses: one method per netlink request.
type kernel interface {
	Services() ([]cfipvs.ServiceExtended, error)
	Destinations(cfipvs.Service) ([]cfipvs.DestinationExtended, error)
	CreateService(cfipvs.Service) error
	UpdateService(cfipvs.Service) error
	RemoveService(cfipvs.Service) error
	CreateDestination(cfipvs.Service, cfipvs.Destination) error
	UpdateDestination(cfipvs.Service, cfipvs.Destination) error
	RemoveDestination(cfipvs.Service, cfipvs.Destination) error
	Daemons() ([]Daemon, error)
	NewDaemon(Daemon) error
	DelDaemon(Daemon) error
	Close() error
}

// Daemon is one running IPVS connection-sync daemon.
type Daemon struct {
	// Backup is true for the receiving daemon, false for the sending one.
	Backup    bool
	Interface string
	SyncID    int
	// MaxLen is the largest sync message payload (0: the kernel's choice).
	MaxLen     int
	McastGroup netip.Addr
	McastPort  uint16
	McastTTL   int
}

// Role is "master" or "backup".
func (d Daemon) Role() string {
	if d.Backup {
		return "backup"
	}
	return "master"
}

// netlinkKernel talks to the kernel: virtual services through
// github.com/cloudflare/ipvs, sync daemons through its own generic
// netlink connection.
type netlinkKernel struct {
	cfipvs.Client
	daemons *daemonConn
}

func dialKernel() (*netlinkKernel, error) {
	c, err := cfipvs.New()
	if err != nil {
		return nil, fmt.Errorf("open IPVS netlink: %w", err)
	}
	conn, err := genetlink.Dial(nil)
	if err != nil {
		_ = closeClient(c) // the open error is the one to report
		return nil, fmt.Errorf("open IPVS netlink: %w", err)
	}
	d, err := newDaemonConn(conn)
	if err != nil {
		_ = closeClient(c) // the open error is the one to report
		conn.Close()
		return nil, err
	}
	return &netlinkKernel{Client: c, daemons: d}, nil
}

func (k *netlinkKernel) Daemons() ([]Daemon, error) { return k.daemons.list() }
func (k *netlinkKernel) NewDaemon(d Daemon) error   { return k.daemons.start(d) }
func (k *netlinkKernel) DelDaemon(d Daemon) error   { return k.daemons.stop(d) }

// Services lists the virtual services; none is not an error.
func (k *netlinkKernel) Services() ([]cfipvs.ServiceExtended, error) {
	ss, err := k.Client.Services()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return ss, err
}

// Destinations lists a service's real servers; an empty service is not
// an error.
func (k *netlinkKernel) Destinations(s cfipvs.Service) ([]cfipvs.DestinationExtended, error) {
	ds, err := k.Client.Destinations(s)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return ds, err
}

func (k *netlinkKernel) Close() error {
	return errors.Join(closeClient(k.Client), k.daemons.c.Close())
}

func closeClient(c cfipvs.Client) error {
	if cl, ok := c.(interface{ Close() error }); ok {
		return cl.Close()
	}
	return nil
}

// Available reports whether this kernel has IPVS (asking for its generic
// netlink family also loads the module when it is not loaded yet).
func Available() bool {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return false
	}
	defer c.Close()
	_, err = c.GetFamily("IPVS")
	return err == nil
}

// counting wraps a kernel and counts the netlink requests made through it.
type counting struct {
	kernel
	reads, writes atomic.Int64
}

func (c *counting) Services() ([]cfipvs.ServiceExtended, error) {
	c.reads.Add(1)
	return c.kernel.Services()
}

func (c *counting) Destinations(s cfipvs.Service) ([]cfipvs.DestinationExtended, error) {
	c.reads.Add(1)
	return c.kernel.Destinations(s)
}

func (c *counting) Daemons() ([]Daemon, error) {
	c.reads.Add(1)
	return c.kernel.Daemons()
}

func (c *counting) CreateService(s cfipvs.Service) error {
	c.writes.Add(1)
	return c.kernel.CreateService(s)
}

func (c *counting) UpdateService(s cfipvs.Service) error {
	c.writes.Add(1)
	return c.kernel.UpdateService(s)
}

func (c *counting) RemoveService(s cfipvs.Service) error {
	c.writes.Add(1)
	return c.kernel.RemoveService(s)
}

func (c *counting) CreateDestination(s cfipvs.Service, d cfipvs.Destination) error {
	c.writes.Add(1)
	return c.kernel.CreateDestination(s, d)
}

func (c *counting) UpdateDestination(s cfipvs.Service, d cfipvs.Destination) error {
	c.writes.Add(1)
	return c.kernel.UpdateDestination(s, d)
}

func (c *counting) RemoveDestination(s cfipvs.Service, d cfipvs.Destination) error {
	c.writes.Add(1)
	return c.kernel.RemoveDestination(s, d)
}

func (c *counting) NewDaemon(d Daemon) error {
	c.writes.Add(1)
	return c.kernel.NewDaemon(d)
}

func (c *counting) DelDaemon(d Daemon) error {
	c.writes.Add(1)
	return c.kernel.DelDaemon(d)
}

// Both netlink encoders need the message header flags below.
const (
	flagsDo   = netlink.Request | netlink.Acknowledge
	flagsDump = netlink.Request | netlink.Dump
)
