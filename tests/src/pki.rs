//! Certificates and keys for a throw-away control plane, generated in-process with `rcgen`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating {what}: {source}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Everything the control plane needs, written to `dir`.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: CertPair,
    pub apiserver: CertPair,
    pub admin: CertPair,
    pub controller_manager: CertPair,
    /// kube-proxy's client certificate (`system:kube-proxy`, bound to `system:node-proxier` by the default RBAC).
    pub kube_proxy: CertPair,
    /// Service-account token signing key (private) and its public half.
    pub sa_key_path: PathBuf,
    pub sa_pub_path: PathBuf,
}

fn gen<T>(what: &'static str, r: Result<T, rcgen::Error>) -> Result<T, PkiError> {
    r.map_err(|source| PkiError::Generate { what, source })
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

impl Pki {
    /// Generates a CA, the apiserver serving certificate (valid for `127.0.0.1`, `localhost`, the in-cluster names
    /// and `service_ip`), client certificates for the admin (`system:masters`), the controller-manager and
    /// kube-proxy, and a service-account signing key; writes them as PEM files into `dir`.
    pub fn generate(dir: &Path, service_ip: &str) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let ca_key = gen("CA key", KeyPair::generate())?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("ringcache-test-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = gen("CA certificate", ca_params.self_signed(&ca_key))?;
        let ca = CertPair {
            cert_pem: ca_cert.pem(),
            key_pem: ca_key.serialize_pem(),
            cert_path: dir.join("ca.crt"),
            key_path: dir.join("ca.key"),
        };
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |what: &'static str,
                    name: &str,
                    sans: Vec<String>,
                    cn: &str,
                    org: Option<&str>,
                    server: bool|
         -> Result<CertPair, PkiError> {
            let key = gen(what, KeyPair::generate())?;
            let mut params = gen(what, CertificateParams::new(sans))?;
            params.distinguished_name = dn(cn, org);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            params.extended_key_usages = vec![if server {
                ExtendedKeyUsagePurpose::ServerAuth
            } else {
                ExtendedKeyUsagePurpose::ClientAuth
            }];
            let cert = gen(what, params.signed_by(&key, &issuer))?;
            Ok(CertPair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
                cert_path: dir.join(format!("{name}.crt")),
                key_path: dir.join(format!("{name}.key")),
            })
        };

        let apiserver = leaf(
            "apiserver certificate",
            "apiserver",
            vec![
                "127.0.0.1".into(),
                "localhost".into(),
                service_ip.into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
            ],
            "kube-apiserver",
            None,
            true,
        )?;
        let admin = leaf(
            "admin certificate",
            "admin",
            vec![],
            "ringcache-admin",
            Some("system:masters"),
            false,
        )?;
        let controller_manager = leaf(
            "controller-manager certificate",
            "controller-manager",
            vec![],
            "system:kube-controller-manager",
            None,
            false,
        )?;
        let kube_proxy = leaf(
            "kube-proxy certificate",
            "kube-proxy",
            vec![],
            "system:kube-proxy",
            None,
            false,
        )?;
        for pair in [&ca, &apiserver, &admin, &controller_manager, &kube_proxy] {
            write(&pair.cert_path, &pair.cert_pem)?;
            write(&pair.key_path, &pair.key_pem)?;
        }

        let sa_key = gen("service-account key", KeyPair::generate())?;
        let sa_key_path = dir.join("sa.key");
        let sa_pub_path = dir.join("sa.pub");
        write(&sa_key_path, &sa_key.serialize_pem())?;
        write(&sa_pub_path, &sa_key.public_key_pem())?;

        Ok(Pki {
            ca,
            apiserver,
            admin,
            controller_manager,
            kube_proxy,
            sa_key_path,
            sa_pub_path,
        })
    }
}
