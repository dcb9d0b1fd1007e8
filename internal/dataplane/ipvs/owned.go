package ipvs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"halb/internal/dataplane"
)

// ownedFile is the record, in the state directory, of what halb created.
const ownedFile = "ipvs-owned.json"

// owned is what halb created in IPVS and may therefore remove.
type owned struct {
	Services []dataplane.ServiceKey `json:"services"`
	// Sync is set while halb manages the sync daemons.
	Sync bool `json:"sync"`
}

func (o owned) has(k dataplane.ServiceKey) bool {
	_, ok := slices.BinarySearchFunc(o.Services, k, dataplane.ServiceKey.Compare)
	return ok
}

func loadOwned(dir string) (owned, error) {
	var o owned
	b, err := os.ReadFile(filepath.Join(dir, ownedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return o, fmt.Errorf("read ipvs ownership record: %w", err)
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("read ipvs ownership record %s: %w", filepath.Join(dir, ownedFile), err)
	}
	slices.SortFunc(o.Services, dataplane.ServiceKey.Compare)
	return o, nil
}

// recordOwned adds the services about to be created to the record before
// any is, so that a crash never leaves a service halb does not know it made.
func (d *Dataplane) recordOwned(want dataplane.State, sync bool) error {
	next := owned{Services: slices.Clone(d.owned.Services), Sync: d.owned.Sync || sync}
	for _, s := range want.Services {
		if !d.owned.has(s.Key) {
			next.Services = append(next.Services, s.Key)
		}
	}
	slices.SortFunc(next.Services, dataplane.ServiceKey.Compare)
	return d.saveOwned(next)
}

// finishOwned shrinks the record to what is wanted once everything was
// applied; after a failure it keeps the larger record.
func (d *Dataplane) finishOwned(want dataplane.State, sync, ok bool) error {
	if !ok {
		return nil
	}
	next := owned{Services: make([]dataplane.ServiceKey, 0, len(want.Services)), Sync: sync}
	for _, s := range want.Services {
		next.Services = append(next.Services, s.Key)
	}
	slices.SortFunc(next.Services, dataplane.ServiceKey.Compare)
	return d.saveOwned(next)
}

func (d *Dataplane) saveOwned(next owned) error {
	if next.Sync == d.owned.Sync && slices.Equal(next.Services, d.owned.Services) {
		return nil
	}
	if next.Services == nil {
		next.Services = []dataplane.ServiceKey{}
	}
	b, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("write ipvs ownership record: %w", err)
	}
	if err := os.MkdirAll(d.stateDir, 0o755); err != nil {
		return fmt.Errorf("write ipvs ownership record: %w", err)
	}
	path := filepath.Join(d.stateDir, ownedFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write ipvs ownership record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write ipvs ownership record: %w", err)
	}
	d.owned = next
	return nil
}
