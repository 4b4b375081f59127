//! TLS and credentials of a MariaDB connection, alike for the source and
//! the destination: `[source.tls]` / `[destination.tls]` and
//! `password_file`.
//!
//! The modes are MariaDB's client's (`--ssl-mode`): `disabled`, `required`
//! (encrypted, the server's certificate not checked), `verify_ca` (signed by
//! `ca_file`, or by a public authority without one) and `verify_identity`
//! (that, and issued for the host of the URL). `cert_file` and `key_file`
//! present a client certificate, for accounts created `REQUIRE X509`.
//! Files are read when the configuration is loaded, so a missing or
//! unreadable one is a configuration error, not a retried connection.

use std::path::{Path, PathBuf};

use mysql_async::{ClientIdentity, OptsBuilder, SslOpts};
use serde::Deserialize;

/// `tls`: how a connection is encrypted and checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    #[serde(default)]
    pub mode: TlsMode,
    /// PEM certificates of the authorities trusted to sign the server's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the server.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Disabled,
    Required,
    VerifyCa,
    VerifyIdentity,
}

/// A setting that cannot be used: its key, what it takes, what it has.
#[derive(Debug)]
pub struct Invalid {
    pub key: String,
    pub expected: String,
    pub actual: String,
}

/// What a connection adds to its URL, read and checked.
#[derive(Debug, Clone, Default)]
pub struct Security {
    ssl: Option<SslOpts>,
    password: Option<String>,
}

impl Security {
    /// Reads the files of `section` (`source` or `destination`), whose
    /// URL is `url`.
    pub fn load(
        section: &str,
        tls: &TlsSection,
        password_file: Option<&Path>,
        url: &str,
    ) -> Result<Self, Invalid> {
        let url_has_password = url_has_password(url);
        let invalid = |key: &str, expected: &str, actual: String| Invalid {
            key: format!("{section}.{key}"),
            expected: expected.into(),
            actual,
        };
        let read = |key: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| invalid(key, "a readable file", format!("{}: {e}", path.display())))
        };
        let password = match password_file {
            None => None,
            Some(_) if url_has_password => {
                return Err(invalid(
                    "password_file",
                    "no password in the URL as well",
                    "both set; keep one".into(),
                ))
            }
            Some(path) => {
                let bytes = read("password_file", path)?;
                let text = String::from_utf8(bytes).map_err(|_| {
                    invalid(
                        "password_file",
                        "a password in UTF-8",
                        path.display().to_string(),
                    )
                })?;
                // A file written by `echo` ends with a line break that is
                // not part of the password.
                Some(text.trim_end_matches(['\n', '\r']).to_string())
            }
        };
        let files_set = tls.ca_file.is_some() || tls.cert_file.is_some() || tls.key_file.is_some();
        let ssl = match tls.mode {
            TlsMode::Disabled if files_set => return Err(invalid(
                "tls.mode",
                "\"required\", \"verify_ca\" or \"verify_identity\" when certificate files are set",
                "\"disabled\"".into(),
            )),
            TlsMode::Disabled => None,
            mode => {
                let mut ssl = SslOpts::default();
                if let Some(path) = &tls.ca_file {
                    let pem = read("tls.ca_file", path)?;
                    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
                        return Err(invalid(
                            "tls.ca_file",
                            "PEM certificates (-----BEGIN CERTIFICATE-----)",
                            path.display().to_string(),
                        ));
                    }
                    ssl = ssl
                        .with_root_certs(vec![pem.into()])
                        .with_disable_built_in_roots(true);
                }
                match (&tls.cert_file, &tls.key_file) {
                    (Some(cert), Some(key)) => {
                        let cert = read("tls.cert_file", cert)?;
                        let key = read("tls.key_file", key)?;
                        ssl = ssl.with_client_identity(Some(ClientIdentity::new(
                            cert.into(),
                            key.into(),
                        )));
                    }
                    (None, None) => {}
                    _ => {
                        return Err(invalid(
                            "tls.cert_file",
                            "cert_file and key_file together",
                            "only one of them set".into(),
                        ))
                    }
                }
                match mode {
                    TlsMode::Required => ssl.with_danger_accept_invalid_certs(true),
                    TlsMode::VerifyCa => ssl.with_danger_skip_domain_validation(true),
                    _ => ssl,
                }
                .into()
            }
        };
        Ok(Self { ssl, password })
    }

    /// The connection options with these added.
    pub fn apply(&self, opts: OptsBuilder) -> OptsBuilder {
        let opts = opts.ssl_opts(self.ssl.clone());
        match &self.password {
            Some(p) => opts.pass(Some(p.clone())),
            None => opts,
        }
    }
}

/// A hint for a connection error that TLS caused, or may have, when it
/// did: a certificate the client refused, or a server that requires TLS.
/// `tls` says whether the connection asked for TLS. Such errors are
/// settings to change, not ones to wait out.
pub fn hint(section: &str, tls: bool, error: &str) -> Option<String> {
    let e = error.to_ascii_lowercase();
    // A server with require_secure_transport=ON refuses a connection
    // without TLS as it refuses a wrong password.
    if !tls && e.contains("access denied") {
        return Some(format!(
            "if the user and password are right and the server takes TLS connections only (require_secure_transport), set {section}.tls.mode"
        ));
    }
    if e.contains("unknownissuer") || e.contains("unknown issuer") || e.contains("badsignature") {
        Some(format!(
            "the server's certificate is not signed by an authority in {section}.tls.ca_file; give the CA that signed it, or set {section}.tls.mode = \"required\" to encrypt without checking"
        ))
    } else if e.contains("notvalidforname") || e.contains("not valid for name") {
        Some(format!(
            "the server's certificate is not issued for the host in {section}.url; connect by a name it names, or set {section}.tls.mode = \"verify_ca\""
        ))
    } else if e.contains("expired") && e.contains("cert") {
        Some("the server's certificate has expired; renew it on the server".to_string())
    } else if e.contains("insecure transport") || e.contains("require_secure_transport") {
        Some(format!(
            "the server accepts TLS connections only; set {section}.tls.mode = \"verify_identity\" (with ca_file) or \"required\""
        ))
    } else if e.contains("server does not have this capability") {
        Some(format!(
            "the server has no TLS set up; set ssl_cert and ssl_key on it, or {section}.tls.mode = \"disabled\""
        ))
    } else if e.contains("invalid peer certificate") || e.contains("certificate required") {
        // Other TLS errors (a connection cut during the handshake) pass
        // and are retried.
        Some(format!(
            "check [{section}.tls] and the server's TLS settings"
        ))
    } else {
        None
    }
}

/// Whether `url` carries a password of its own.
fn url_has_password(url: &str) -> bool {
    mysql_async::Opts::from_url(&url.replacen("mariadb://", "mysql://", 1))
        .is_ok_and(|o| o.pass().is_some_and(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("secure-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_password_file_loses_its_line_break_only() {
        let path = file("pw", " pass word \n");
        let s =
            Security::load("source", &TlsSection::default(), Some(&path), "mysql://u@h").unwrap();
        assert_eq!(s.password.as_deref(), Some(" pass word "));
        let both = Security::load(
            "source",
            &TlsSection::default(),
            Some(&path),
            "mysql://u:p@h",
        );
        assert_eq!(both.unwrap_err().key, "source.password_file");
        let missing = Path::new("/nonexistent/pw");
        let err = Security::load(
            "destination",
            &TlsSection::default(),
            Some(missing),
            "mysql://u@h",
        );
        assert_eq!(err.unwrap_err().key, "destination.password_file");
    }

    #[test]
    fn certificate_files_are_checked_when_loaded() {
        let not_pem = file("ca", "not a certificate");
        let tls = TlsSection {
            mode: TlsMode::VerifyCa,
            ca_file: Some(not_pem.clone()),
            ..Default::default()
        };
        let err = Security::load("source", &tls, None, "mysql://u@h").unwrap_err();
        assert_eq!(err.key, "source.tls.ca_file");
        let disabled = TlsSection {
            mode: TlsMode::Disabled,
            ca_file: Some(not_pem.clone()),
            ..Default::default()
        };
        let err = Security::load("source", &disabled, None, "mysql://u@h").unwrap_err();
        assert_eq!(err.key, "source.tls.mode");
        let half = TlsSection {
            mode: TlsMode::Required,
            cert_file: Some(not_pem),
            ..Default::default()
        };
        let err = Security::load("source", &half, None, "mysql://u@h").unwrap_err();
        assert_eq!(err.key, "source.tls.cert_file");
    }

    #[test]
    fn hints_name_the_setting_to_change() {
        let unknown = hint(
            "source",
            true,
            "TLS error: invalid peer certificate: UnknownIssuer",
        );
        assert!(unknown.unwrap().contains("source.tls.ca_file"));
        let denied = hint("destination", false, "Access denied for user 'u'@'h'");
        assert!(denied.unwrap().contains("destination.tls.mode"));
        assert_eq!(hint("source", true, "Access denied for user 'u'@'h'"), None);
        assert_eq!(
            hint("source", true, "Connection refused (os error 111)"),
            None
        );
    }

    #[test]
    fn passwords_in_urls() {
        assert!(url_has_password("mysql://u:p@h:3306"));
        assert!(!url_has_password("mariadb://u@h:3306"));
    }
}
