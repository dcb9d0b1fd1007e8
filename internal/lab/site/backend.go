package site

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// nginxConf serves, on 80 and 443: /healthz (200 "ok"), and / with a body
// naming the backend, so clients can tell which backend answered.
const nginxConf = `worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    server {
        listen 80 default_server;
        listen 443 ssl default_server;
        ssl_certificate %[1]s/tls.crt;
        ssl_certificate_key %[1]s/tls.key;
        location = /healthz { default_type text/plain; return 200 "ok\n"; }
        location / { default_type text/plain; return 200 "%[2]s\n"; }
    }
}
`

// vsftpdConf serves anonymous FTP, passive on 10000-10100 and active from
// port 20, with a banner naming the backend.
const vsftpdConf = `listen=YES
listen_ipv6=NO
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root=%[1]s/ftp
ftp_username=ftp
local_enable=NO
write_enable=NO
pasv_enable=YES
pasv_min_port=10000
pasv_max_port=10100
connect_from_port_20=YES
port_enable=YES
secure_chroot_dir=%[1]s/empty
seccomp_sandbox=NO
xferlog_enable=NO
ftpd_banner=%[2]s
`

// writeBackendFiles lays out a backend's directory: nginx and vsftpd
// configuration, a self-signed certificate, and a file to download.
func writeBackendFiles(dir, name string, cert, key []byte) error {
	for _, d := range []string{"tmp", "ftp", "empty"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string][]byte{
		"nginx.conf":  fmt.Appendf(nil, nginxConf, dir, name),
		"vsftpd.conf": fmt.Appendf(nil, vsftpdConf, dir, name),
		"tls.crt":     cert,
		"tls.key":     key,
		"ftp/whoami":  []byte(name + "\n"),
	}
	for f, data := range files {
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			return err
		}
	}
	// vsftpd refuses an anonymous root it could write to.
	return os.Chmod(filepath.Join(dir, "ftp"), 0o555)
}

// selfSigned makes a certificate for the lab's VIPs.
func selfSigned(ips []net.IP) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "www.example.org"},
		DNSNames:     []string{"www.example.org"},
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}
