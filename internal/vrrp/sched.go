package vrrp

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// schedRefresh is how often threads the runtime started since the last
// pass are given the real-time policy (they do not inherit it: see
// setPolicy).
const schedRefresh = time.Second

// scheduling is how the process is scheduled for VRRP's sake
// (vrrp.realtime_priority, vrrp.lock_memory), kept by the runner.
type scheduling struct {
	prio   int // applied real-time priority, 0: normal
	locked bool
	// next is when to look for new threads (zero: not needed).
	next time.Time
}

// set applies prio and lock if they differ from what is applied.
func (s *scheduling) set(prio int, lock bool, now time.Time) error {
	var errs []error
	if prio != s.prio {
		if err := setPolicy(prio); err != nil {
			errs = append(errs, err)
		} else {
			s.prio = prio
		}
	}
	s.next = time.Time{}
	if s.prio > 0 {
		s.next = now.Add(schedRefresh)
	}
	if lock != s.locked {
		var err error
		if lock {
			err = unix.Mlockall(unix.MCL_CURRENT | unix.MCL_FUTURE | unix.MCL_ONFAULT)
		} else {
			err = unix.Munlockall()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("lock memory (%v): %w", lock, err))
		} else {
			s.locked = lock
		}
	}
	return errors.Join(errs...)
}

// refresh gives threads started since the last pass the real-time policy.
func (s *scheduling) refresh(now time.Time) error {
	s.next = now.Add(schedRefresh)
	return setPolicy(s.prio)
}

// setPolicy sets every thread of the process to SCHED_RR at prio (1..99)
// or back to SCHED_OTHER (0). Real-time threads are marked to reset on
// fork, so that scripts and checks the process starts run normally; the
// runtime's new threads are reset too, hence refresh.
func setPolicy(prio int) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
	if prio > 0 {
		attr.Policy, attr.Priority, attr.Flags = unix.SCHED_RR, uint32(prio), unix.SCHED_FLAG_RESET_ON_FORK
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("set scheduling policy: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if cur, err := unix.SchedGetAttr(tid, 0); err == nil && cur.Policy == attr.Policy && cur.Priority == attr.Priority {
			continue
		}
		if err := unix.SchedSetAttr(tid, &attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("set scheduling policy of thread %d (priority %d): %w", tid, prio, err)
		}
	}
	return nil
}
