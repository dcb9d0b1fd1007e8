package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	cfipvs "github.com/cloudflare/ipvs"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// kernel is the part of IPVS's generic netlink interface the data plane
// uses.
type kernel interface {
	Services() ([]cfipvs.ServiceExtended, error)
	// Destinations lists the real servers of each service, in order.
	Destinations([]cfipvs.Service) ([][]cfipvs.DestinationExtended, error)
	// Apply makes the changes, in order, and returns each one's error.
	Apply([]request) []error
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

// netlinkKernel talks to the kernel: it reads virtual services through
// github.com/cloudflare/ipvs, several real-server dumps at once on as many
// sockets; it changes them, and runs the sync daemons, on a generic
// netlink connection of its own, changes in batches.
type netlinkKernel struct {
	readers []cfipvs.Client
	daemons *daemonConn
	batch   *batcher
}

// readers is how many real-server dumps run at once: the kernel runs one
// dump at a time per socket.
const readers = 4

func dialKernel() (*netlinkKernel, error) {
	k := &netlinkKernel{}
	if err := k.open(); err != nil {
		_ = k.Close() // the open error is the one to report
		return nil, err
	}
	return k, nil
}

// open opens the sockets; Close closes those opened.
func (k *netlinkKernel) open() error {
	for range readers {
		c, err := cfipvs.New()
		if err != nil {
			return fmt.Errorf("open IPVS netlink: %w", err)
		}
		k.readers = append(k.readers, c)
	}
	conn, err := netlink.Dial(unix.NETLINK_GENERIC, nil)
	if err != nil {
		return fmt.Errorf("open IPVS netlink: %w", err)
	}
	gc := genetlink.NewConn(conn)
	if k.daemons, err = newDaemonConn(gc); err != nil {
		_ = gc.Close() // the open error is the one to report
		return err
	}
	k.batch, err = newBatcher(conn, k.daemons.family)
	return err
}

func (k *netlinkKernel) Daemons() ([]Daemon, error)   { return k.daemons.list() }
func (k *netlinkKernel) NewDaemon(d Daemon) error     { return k.daemons.start(d) }
func (k *netlinkKernel) DelDaemon(d Daemon) error     { return k.daemons.stop(d) }
func (k *netlinkKernel) Apply(reqs []request) []error { return k.batch.apply(reqs) }

// Services lists the virtual services; none is not an error.
func (k *netlinkKernel) Services() ([]cfipvs.ServiceExtended, error) {
	ss, err := k.readers[0].Services()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return ss, err
}

// Destinations dumps the services' real servers, one dump per reader
// socket at a time; an empty service is not an error.
func (k *netlinkKernel) Destinations(svcs []cfipvs.Service) ([][]cfipvs.DestinationExtended, error) {
	out := make([][]cfipvs.DestinationExtended, len(svcs))
	errs := make([]error, len(k.readers))
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w, c := range k.readers {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(svcs) {
					return
				}
				ds, err := c.Destinations(svcs[i])
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					errs[w] = fmt.Errorf("list real servers of %s: %w", keyOf(svcs[i]), err)
					failed.Store(true)
					return
				}
				out[i] = ds
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func (k *netlinkKernel) Close() error {
	var errs []error
	for _, c := range k.readers {
		errs = append(errs, closeClient(c))
	}
	if k.daemons != nil {
		errs = append(errs, k.daemons.c.Close())
	}
	return errors.Join(errs...)
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

func (c *counting) Destinations(svcs []cfipvs.Service) ([][]cfipvs.DestinationExtended, error) {
	c.reads.Add(int64(len(svcs)))
	return c.kernel.Destinations(svcs)
}

func (c *counting) Daemons() ([]Daemon, error) {
	c.reads.Add(1)
	return c.kernel.Daemons()
}

func (c *counting) Apply(reqs []request) []error {
	c.writes.Add(int64(len(reqs)))
	return c.kernel.Apply(reqs)
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
