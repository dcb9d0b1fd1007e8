// Package maglev builds Maglev consistent-hashing lookup tables (Eisenbud
// et al., NSDI 2016, §3.4). The table depends only on the backends' names,
// weights and the table size, never on the order the backends are given
// in, so every node that builds it from the same pool agrees on it.
package maglev

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
)

// Backend is one destination of a lookup table.
type Backend struct {
	// ID is the backend's canonical identity ("198.51.100.11:80"); the
	// hash functions see only this.
	ID string
	// Weight is the number of turns the backend takes per round; 0 keeps
	// it out of the table.
	Weight int
}

// Table is a lookup table: Entries[slot] indexes Backends.
type Table struct {
	// Backends are the backends with a non-zero weight, in canonical
	// (ID) order.
	Backends []Backend
	// Entries has one backend index per slot; it is empty when no
	// backend has a weight.
	Entries []int32
}

// Lookup returns the backend of a slot, and false when the table is empty.
func (t Table) Lookup(slot int) (Backend, bool) {
	if len(t.Entries) == 0 {
		return Backend{}, false
	}
	return t.Backends[t.Entries[slot%len(t.Entries)]], true
}

// Counts returns how many slots each backend (in Backends order) holds.
func (t Table) Counts() []int {
	n := make([]int, len(t.Backends))
	for _, e := range t.Entries {
		n[e]++
	}
	return n
}

// DefaultSize returns the table size used when none is configured for n
// backends: the smallest prime of at least 32·n and 127, which keeps every
// backend within about 3% of its share while a service with ten backends
// costs a few hundred map elements.
func DefaultSize(n int) int {
	return NextPrime(max(32*n, 127))
}

// NextPrime returns the smallest prime not less than n.
func NextPrime(n int) int {
	for n = max(n, 2); !IsPrime(n); n++ {
	}
	return n
}

// IsPrime reports whether n is prime.
func IsPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// New builds the lookup table of the given prime size. Backends may be
// given in any order; IDs must be unique.
func New(backends []Backend, size int) (Table, error) {
	if !IsPrime(size) {
		return Table{}, fmt.Errorf("maglev table size %d is not a prime", size)
	}
	var bs []Backend
	for _, b := range backends {
		if b.Weight < 0 {
			return Table{}, fmt.Errorf("maglev backend %s: negative weight %d", b.ID, b.Weight)
		}
		if b.Weight > 0 {
			bs = append(bs, b)
		}
	}
	slices.SortFunc(bs, func(a, b Backend) int { return cmp.Compare(a.ID, b.ID) })
	for i := 1; i < len(bs); i++ {
		if bs[i].ID == bs[i-1].ID {
			return Table{}, errors.New("maglev backend " + bs[i].ID + " given twice")
		}
	}
	t := Table{Backends: bs}
	if len(bs) == 0 {
		return t, nil
	}
	turns := reducedWeights(bs)
	m := uint64(size)
	offset := make([]uint64, len(bs))
	skip := make([]uint64, len(bs))
	next := make([]uint64, len(bs))
	for i, b := range bs {
		offset[i] = hash("offset", b.ID) % m
		skip[i] = hash("skip", b.ID)%(m-1) + 1
	}
	entries := make([]int32, size)
	for i := range entries {
		entries[i] = -1
	}
	filled := 0
	for {
		for i := range bs {
			for range turns[i] {
				c := (offset[i] + next[i]*skip[i]) % m
				for entries[c] >= 0 {
					next[i]++
					c = (offset[i] + next[i]*skip[i]) % m
				}
				entries[c] = int32(i)
				next[i]++
				filled++
				if filled == size {
					t.Entries = entries
					return t, nil
				}
			}
		}
	}
}

// reducedWeights divides the weights by their greatest common divisor, so
// that weights 2,2 build the same table as 1,1 (as the kernel's ip_vs_mh).
func reducedWeights(bs []Backend) []int {
	g := 0
	for _, b := range bs {
		g = gcd(g, b.Weight)
	}
	out := make([]int, len(bs))
	for i, b := range bs {
		out[i] = b.Weight / g
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// hash is FNV-1a over a domain label and the ID, finished with the
// splitmix64 mixer so that IDs differing in their last byte land far
// apart. It is fixed across versions and platforms, which the tables'
// agreement between nodes depends on.
func hash(domain, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(domain))
	h.Write([]byte{0})
	h.Write([]byte(id))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
