package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	cfipvs "github.com/cloudflare/ipvs"

	"halb/internal/dataplane"
)

// fakeKernel keeps IPVS state in memory and answers as the kernel does:
// EEXIST, ESRCH and ENOENT where it would, the hashed flag on services.
type fakeKernel struct {
	mu      sync.Mutex
	svcs    map[dataplane.ServiceKey]*fakeService
	order   []dataplane.ServiceKey
	daemons []Daemon
	fail    map[string]int // op name, or name and real ("update-real 192.0.2.1:80") → failures left
	ops     []string
	batches []int // the size of each Apply
	closed  bool
}

type fakeService struct {
	svc   cfipvs.Service
	dests []cfipvs.Destination
	// conns stands for the counters a service keeps while it exists.
	conns uint64
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{svcs: map[dataplane.ServiceKey]*fakeService{}, fail: map[string]int{}}
}

func (f *fakeKernel) op(name string) error {
	f.ops = append(f.ops, name)
	if f.fail[name] > 0 {
		f.fail[name]--
		return fmt.Errorf("injected failure of %s: %w", name, syscall.ENOMEM)
	}
	return nil
}

// realOp is op for a request on one real server, which may also fail by
// name and address.
func (f *fakeKernel) realOp(name string, d cfipvs.Destination) error {
	if err := f.op(name); err != nil {
		return err
	}
	if k := name + " " + netip.AddrPortFrom(d.Address, d.Port).String(); f.fail[k] > 0 {
		f.fail[k]--
		return fmt.Errorf("injected failure of %s: %w", k, syscall.ENOMEM)
	}
	return nil
}

func (f *fakeKernel) Services() ([]cfipvs.ServiceExtended, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("list"); err != nil {
		return nil, err
	}
	var out []cfipvs.ServiceExtended
	for _, k := range f.order {
		s := f.svcs[k].svc
		s.Flags |= cfipvs.ServiceHashed
		out = append(out, cfipvs.ServiceExtended{Service: s, Stats64: cfipvs.Stats{Connections: f.svcs[k].conns}})
	}
	return out, nil
}

func (f *fakeKernel) find(s cfipvs.Service) (*fakeService, error) {
	fs, ok := f.svcs[keyOf(s)]
	if !ok {
		return nil, syscall.ESRCH
	}
	return fs, nil
}

func (f *fakeKernel) Destinations(svcs []cfipvs.Service) ([][]cfipvs.DestinationExtended, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]cfipvs.DestinationExtended, len(svcs))
	for i, s := range svcs {
		if err := f.op("list-dests"); err != nil {
			return nil, err
		}
		fs, err := f.find(s)
		if err != nil {
			return nil, err
		}
		for _, d := range fs.dests {
			out[i] = append(out[i], cfipvs.DestinationExtended{Destination: d})
		}
	}
	return out, nil
}

// Apply makes each change as the kernel would, in order.
func (f *fakeKernel) Apply(reqs []request) []error {
	f.mu.Lock()
	f.batches = append(f.batches, len(reqs))
	f.mu.Unlock()
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		switch r.cmd {
		case cmdNewService:
			errs[i] = f.createService(r.svc)
		case cmdSetService:
			errs[i] = f.updateService(r.svc)
		case cmdDelService:
			errs[i] = f.removeService(r.svc)
		case cmdNewDest:
			errs[i] = f.createDestination(r.svc, r.dest)
		case cmdSetDest:
			errs[i] = f.updateDestination(r.svc, r.dest)
		case cmdDelDest:
			errs[i] = f.removeDestination(r.svc, r.dest)
		default:
			errs[i] = syscall.EINVAL
		}
	}
	return errs
}

func (f *fakeKernel) createService(s cfipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("add-service"); err != nil {
		return err
	}
	k := keyOf(s)
	if _, ok := f.svcs[k]; ok {
		return syscall.EEXIST
	}
	f.svcs[k] = &fakeService{svc: s}
	f.order = append(f.order, k)
	return nil
}

func (f *fakeKernel) updateService(s cfipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("update-service"); err != nil {
		return err
	}
	fs, err := f.find(s)
	if err != nil {
		return err
	}
	fs.svc = s
	return nil
}

func (f *fakeKernel) removeService(s cfipvs.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("remove-service"); err != nil {
		return err
	}
	k := keyOf(s)
	if _, ok := f.svcs[k]; !ok {
		return syscall.ESRCH
	}
	delete(f.svcs, k)
	f.order = slices.DeleteFunc(f.order, func(x dataplane.ServiceKey) bool { return x == k })
	return nil
}

func destIndex(fs *fakeService, d cfipvs.Destination) int {
	return slices.IndexFunc(fs.dests, func(x cfipvs.Destination) bool { return x.Address == d.Address && x.Port == d.Port })
}

func (f *fakeKernel) createDestination(s cfipvs.Service, d cfipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.realOp("add-real", d); err != nil {
		return err
	}
	fs, err := f.find(s)
	if err != nil {
		return err
	}
	if destIndex(fs, d) >= 0 {
		return syscall.EEXIST
	}
	fs.dests = append(fs.dests, d)
	return nil
}

func (f *fakeKernel) updateDestination(s cfipvs.Service, d cfipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.realOp("update-real", d); err != nil {
		return err
	}
	fs, err := f.find(s)
	if err != nil {
		return err
	}
	i := destIndex(fs, d)
	if i < 0 {
		return syscall.ENOENT
	}
	fs.dests[i] = d
	return nil
}

func (f *fakeKernel) removeDestination(s cfipvs.Service, d cfipvs.Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.realOp("remove-real", d); err != nil {
		return err
	}
	fs, err := f.find(s)
	if err != nil {
		return err
	}
	i := destIndex(fs, d)
	if i < 0 {
		return syscall.ENOENT
	}
	fs.dests = slices.Delete(fs.dests, i, i+1)
	return nil
}

func (f *fakeKernel) Daemons() ([]Daemon, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("list-daemons"); err != nil {
		return nil, err
	}
	return slices.Clone(f.daemons), nil
}

func (f *fakeKernel) NewDaemon(d Daemon) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("start-daemon"); err != nil {
		return err
	}
	if slices.ContainsFunc(f.daemons, func(x Daemon) bool { return x.Backup == d.Backup }) {
		return syscall.EEXIST
	}
	f.daemons = append(f.daemons, d)
	return nil
}

func (f *fakeKernel) DelDaemon(d Daemon) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.op("stop-daemon"); err != nil {
		return err
	}
	i := slices.IndexFunc(f.daemons, func(x Daemon) bool { return x.Backup == d.Backup })
	if i < 0 {
		return syscall.ESRCH
	}
	f.daemons = slices.Delete(f.daemons, i, i+1)
	return nil
}

func (f *fakeKernel) Close() error {
	f.closed = true
	return nil
}

// state renders the fake's services in the data plane's form.
func (f *fakeKernel) state() dataplane.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s dataplane.State
	for _, k := range f.order {
		fs := f.svcs[k]
		vs := fromKernel(fs.svc)
		vs.Reals = []dataplane.Real{}
		for _, d := range fs.dests {
			vs.Reals = append(vs.Reals, realFromKernel(d))
		}
		s.Services = append(s.Services, vs)
	}
	s.Sort()
	return s
}

// writes counts the state-changing requests made so far.
func (f *fakeKernel) writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, op := range f.ops {
		if !slices.Contains([]string{"list", "list-dests", "list-daemons"}, op) {
			n++
		}
	}
	return n
}
