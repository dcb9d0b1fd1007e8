// Package vm boots a small QEMU virtual machine running Debian's kernel,
// which has IPVS, with the host's root file system mounted read-only over
// 9p: the guest runs the host's own binaries (test binaries, halb,
// ipvsadm, keepalived) unchanged. Tests of the IPVS data plane use it
// because the build machines' kernel has no IPVS.
//
// The kernel and initramfs are built once from Debian's kernel package
// (fetched with apt-get download) and cached; a boot then takes seconds.
package vm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// Image is a bootable kernel and initramfs.
type Image struct {
	// Kernel and Initrd are the files given to qemu.
	Kernel, Initrd string
	// Modules is the extracted kernel package; its path is the same on
	// the host and, through the read-only root share, in the guest.
	Modules string
	// Version is the kernel release ("6.1.0-56-amd64").
	Version string
	// Preload is the insmod sequence run in the guest once the host root
	// is mounted, with host paths.
	Preload []string
}

// Modules loaded in the guest before the command runs (with their
// dependencies). crc32c_generic comes first: libcrc32c needs it.
var guestModules = []string{
	"crc32c_generic", "dummy", "veth", "bridge",
	"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_fo", "ip_vs_ovf",
	"ip_vs_lblc", "ip_vs_lblcr", "ip_vs_dh", "ip_vs_sh", "ip_vs_mh", "ip_vs_sed",
	"ip_vs_nq", "ip_vs_ftp",
	"nf_tables", "nft_ct", "nft_nat", "nft_chain_nat", "nft_masq", "nft_hash", "nft_numgen",
	"nft_fib_inet", "nf_nat_ftp", "nft_reject_inet", "nft_fwd_netdev",
}

// Modules the initramfs itself needs to mount the host root.
var bootModules = []string{"virtio_pci", "9pnet_virtio", "9p"}

// CacheDir is where images are kept: $HALB_VM_CACHE, else .cache/ipvs-vm
// in the module tree (git-ignored).
func CacheDir() string {
	if d := os.Getenv("HALB_VM_CACHE"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", ".cache", "ipvs-vm")
}

// Prepare returns the cached image, building it first when needed. It is
// safe to call from several processes at once (a file lock serialises
// the build).
func Prepare(ctx context.Context) (*Image, error) {
	for _, tool := range []string{"qemu-system-x86_64", "apt-get", "apt-cache", "dpkg-deb", "depmod", "modprobe", "cpio", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("prepare vm image: %s is not installed (scripts/install-deps.sh installs it)", tool)
		}
	}
	cache, err := filepath.Abs(CacheDir())
	if err != nil {
		return nil, fmt.Errorf("prepare vm image: %w", err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("prepare vm image: %w", err)
	}
	unlock, err := lockFile(filepath.Join(cache, "lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	pkg, err := kernelPackage(ctx)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, pkg)
	img := &Image{
		Kernel:  filepath.Join(dir, "vmlinuz"),
		Initrd:  filepath.Join(dir, "initrd.gz"),
		Modules: filepath.Join(dir, "root"),
		Version: strings.TrimPrefix(pkg, "linux-image-"),
	}
	if _, err := os.Stat(filepath.Join(dir, "ready")); err != nil {
		if err := build(ctx, pkg, dir, img); err != nil {
			return nil, err
		}
	}
	img.Preload, err = insmodSequence(ctx, img, guestModules)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// kernelPackage names the kernel package linux-image-amd64 depends on
// today (refreshing the package lists when they lack it), or the cached
// one when the archive cannot be asked.
func kernelPackage(ctx context.Context) (string, error) {
	if name, err := dependency(ctx); err == nil {
		return name, nil
	}
	if err := cmd(ctx, "/", "apt-get", "update", "-q"); err == nil {
		if name, err := dependency(ctx); err == nil {
			return name, nil
		}
	}
	matches, _ := filepath.Glob(filepath.Join(CacheDir(), "linux-image-*", "ready"))
	if len(matches) > 0 {
		return filepath.Base(filepath.Dir(matches[len(matches)-1])), nil
	}
	_, err := dependency(ctx)
	return "", err
}

func dependency(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
				return f[1], nil
			}
		}
	}
	return "", fmt.Errorf("find kernel package: apt-cache depends linux-image-amd64: %v: %s", err, out)
}

func build(ctx context.Context, pkg, dir string, img *Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("build vm image: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("build vm image: %w", err)
	}
	if err := download(ctx, pkg, dir); err != nil {
		return err
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("build vm image: apt-get download %s left %d packages", pkg, len(debs))
	}
	if err := cmd(ctx, dir, "dpkg-deb", "-x", debs[0], img.Modules); err != nil {
		return err
	}
	if err := os.Remove(debs[0]); err != nil {
		return fmt.Errorf("build vm image: %w", err)
	}
	if err := cmd(ctx, dir, "depmod", "-b", img.Modules, img.Version); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(img.Modules, "boot", "vmlinuz-"+img.Version), img.Kernel); err != nil {
		return fmt.Errorf("build vm image: %w", err)
	}
	if err := buildInitrd(ctx, img, dir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644); err != nil {
		return fmt.Errorf("build vm image: %w", err)
	}
	return nil
}

// download fetches the package, refreshing the package lists once when
// the archive no longer has the version they name.
func download(ctx context.Context, pkg, dir string) error {
	err := cmd(ctx, dir, "apt-get", "download", "-q", pkg)
	if err == nil {
		return nil
	}
	if uerr := cmd(ctx, dir, "apt-get", "update", "-q"); uerr != nil {
		return errors.Join(err, uerr)
	}
	return cmd(ctx, dir, "apt-get", "download", "-q", pkg)
}

// buildInitrd writes a gzip-compressed newc cpio archive holding busybox,
// the modules that mount the host root, and /init.
func buildInitrd(ctx context.Context, img *Image, dir string) error {
	stage := filepath.Join(dir, "initrd")
	for _, d := range []string{"bin", "dev", "proc", "sys", "mnt/root", "mod"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			return fmt.Errorf("build initrd: %w", err)
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("build initrd: %w", err)
	}
	if err := copyFile(bb, filepath.Join(stage, "bin", "busybox"), 0o755); err != nil {
		return err
	}
	seq, err := insmodSequence(ctx, img, bootModules)
	if err != nil {
		return err
	}
	var loads strings.Builder
	for i, path := range seq {
		name := fmt.Sprintf("%02d-%s", i, filepath.Base(path))
		if err := copyFile(path, filepath.Join(stage, "mod", name), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&loads, "insmod /mod/%s\n", name)
	}
	initScript := strings.Replace(initTemplate, "@LOADS@", loads.String(), 1)
	if err := os.WriteFile(filepath.Join(stage, "init"), []byte(initScript), 0o755); err != nil {
		return fmt.Errorf("build initrd: %w", err)
	}
	c := exec.CommandContext(ctx, "sh", "-c", "find . | cpio -o -H newc --quiet")
	c.Dir = stage
	var archive, stderr bytes.Buffer
	c.Stdout, c.Stderr = &archive, &stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("build initrd: cpio: %w: %s", err, stderr.Bytes())
	}
	f, err := os.Create(img.Initrd)
	if err != nil {
		return fmt.Errorf("build initrd: %w", err)
	}
	zw := gzip.NewWriter(f)
	if _, err := io.Copy(zw, &archive); err != nil {
		_ = f.Close() // the copy's error is the one to report
		return fmt.Errorf("build initrd: %w", err)
	}
	if err := errors.Join(zw.Close(), f.Close(), os.RemoveAll(stage)); err != nil {
		return fmt.Errorf("build initrd: %w", err)
	}
	return nil
}

// insmodSequence lists the module files to load, dependencies first and
// each once, for the named modules; built-in modules have no file.
func insmodSequence(ctx context.Context, img *Image, names []string) ([]string, error) {
	var seq []string
	seen := map[string]bool{}
	for _, n := range names {
		out, err := exec.CommandContext(ctx, "modprobe", "-d", img.Modules, "-S", img.Version, "--show-depends", n).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("resolve module %s: %w: %s", n, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "insmod" && !seen[f[1]] {
				seen[f[1]] = true
				seq = append(seq, f[1])
			}
		}
	}
	return seq, nil
}

func cmd(ctx context.Context, dir, name string, args ...string) error {
	c := exec.CommandContext(ctx, name, args...)
	c.Dir = dir
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock vm cache: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close() // the lock's error is the one to report
		return nil, fmt.Errorf("lock vm cache: %w", err)
	}
	return func() { _ = f.Close() }, nil // closing releases the lock; nothing was written
}

// initTemplate is the guest's /init: load the 9p modules, mount the host
// root read-only and the run directory writable at the same path, load
// the kernel modules tests need, and run the run directory's script
// chrooted into the host root; then power off.
const initTemplate = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
@LOADS@
for arg in $(cat /proc/cmdline); do
  case "$arg" in halb.run=*) RUN="${arg#halb.run=}" ;; esac
done
R=/mnt/root
if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144 hostroot $R; then
  echo "halb-vm: cannot mount the host root"; poweroff -f
fi
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 run $R$RUN || { echo "halb-vm: cannot mount $RUN"; poweroff -f; }
sh $R$RUN/preload.sh > $R$RUN/preload.log 2>&1
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm 2>/dev/null
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs tmpfs $R/run
mount -t tmpfs tmpfs $R/var/tmp
chroot $R /bin/sh $RUN/run.sh > $R$RUN/output 2>&1
echo $? > $R$RUN/exit
sync
echo "halb-vm: done"
poweroff -f
`
