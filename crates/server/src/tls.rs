//! The HTTPS certificate: the operator's, or a self-signed one made on first start and kept in the data dir.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::net::lan_addresses;

pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub generated: bool,
}

/// Returns the certificate to serve, generating `data_dir/tls/{cert,key}.pem` when none exists yet.
pub fn ensure_certificate(data_dir: &Path) -> Result<CertFiles> {
    let dir = data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok(CertFiles {
            cert,
            key,
            generated: false,
        });
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    names.extend(lan_addresses().iter().map(|ip| ip.to_string()));
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
            names.push(format!("{host}.local"));
        }
    }
    let signed = rcgen::generate_simple_self_signed(names).context("generating a certificate")?;
    std::fs::write(&cert, signed.cert.pem())
        .with_context(|| format!("writing {}", cert.display()))?;
    write_private(&key, signed.signing_key.serialize_pem().as_bytes())?;
    Ok(CertFiles {
        cert,
        key,
        generated: true,
    })
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_is_made_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("parley-tls-{}", std::process::id()));
        let first = ensure_certificate(&dir).unwrap();
        assert!(first.generated);
        let cert = std::fs::read_to_string(&first.cert).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let key_mode = std::fs::metadata(&first.key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            key_mode.permissions().mode() & 0o077,
            0,
            "the key is private"
        );
        let second = ensure_certificate(&dir).unwrap();
        assert!(!second.generated);
        assert_eq!(
            std::fs::read_to_string(&second.cert).unwrap(),
            cert,
            "same certificate after restart"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
