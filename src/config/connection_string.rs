//! ODBC connection strings: built from the `mssql_*` keys, and redacted for display.

use crate::config::{Encrypt, SqlServerConfig};
use crate::error::ConfigError;
use crate::model::SqlServerDriver;

/// The Microsoft driver version a config's keywords need beyond what its driver name says:
/// `ServerCertificate` arrived in Driver 18.1, and an older driver does not refuse it, it only
/// warns (01S00) and connects without pinning the certificate.
pub(crate) fn required_driver_version(
    config: &SqlServerConfig,
) -> Option<(&'static str, (u32, u32))> {
    let microsoft = matches!(
        SqlServerDriver::from_name(&config.driver),
        SqlServerDriver::Microsoft { .. }
    );
    (microsoft && config.server_certificate.is_some()).then_some(("cert", (18, 1)))
}

/// Refuses a driver older than the config needs. `driver_version` is `SQL_DRIVER_VER` as the
/// driver reports it (`18.06.0002`); an unreadable version is not refused.
pub(crate) fn check_driver_version(
    config: &SqlServerConfig,
    driver_version: &str,
) -> Result<(), ConfigError> {
    let Some((key, (major, minor))) = required_driver_version(config) else {
        return Ok(());
    };
    let mut parts = driver_version
        .trim()
        .split('.')
        .map(|part| part.trim().parse::<u32>().ok());
    let (Some(Some(have_major)), Some(Some(have_minor))) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    if (have_major, have_minor) >= (major, minor) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        format!(
            "ServerCertificate needs Microsoft ODBC Driver {major}.{minor} or later, and the \
             installed driver is version {}; it would connect without pinning the certificate",
            driver_version.trim()
        ),
        format!("Microsoft ODBC Driver {major}.{minor} or later installed, or remove {key}"),
    ))
}

/// Builds the connection string for Microsoft ODBC Driver 17/18 for SQL Server, or FreeTDS when
/// the configured driver name says so. The login timeout is not a keyword here: Driver 18
/// rejects `LoginTimeout` (01S00, "Invalid connection string attribute"), so it is set as
/// `SQL_ATTR_LOGIN_TIMEOUT` on the connection handle for every driver.
pub(crate) fn sqlserver(config: &SqlServerConfig) -> String {
    let mut parts: Vec<(&str, String)> = vec![("Driver", config.driver.clone())];
    match SqlServerDriver::from_name(&config.driver) {
        SqlServerDriver::FreeTds => {
            parts.push(("Server", config.server.clone()));
            parts.push(("Port", config.port.unwrap_or(1433).to_string()));
            parts.push(("TDS_Version", "7.4".into()));
            parts.push(("ClientCharset", "UTF-8".into()));
            if config.encrypt != Encrypt::No {
                parts.push(("Encryption", "require".into()));
            }
            if config.read_only_intent {
                parts.push(("ApplicationIntent", "ReadOnly".into()));
            }
        }
        SqlServerDriver::Microsoft { .. } => {
            let server = match config.port {
                Some(port) => format!("tcp:{},{port}", config.server),
                None => format!("tcp:{}", config.server),
            };
            parts.push(("Server", server));
            let encrypt = match config.encrypt {
                Encrypt::Yes => "yes",
                Encrypt::No => "no",
                Encrypt::Strict => "strict",
            };
            parts.push(("Encrypt", encrypt.into()));
            let trust = if config.trust_server_certificate {
                "yes"
            } else {
                "no"
            };
            parts.push(("TrustServerCertificate", trust.into()));
            if let Some(host) = &config.host_name_in_certificate {
                parts.push(("HostNameInCertificate", host.clone()));
            }
            if let Some(cert) = &config.server_certificate {
                parts.push(("ServerCertificate", cert.clone()));
            }
            if config.read_only_intent {
                parts.push(("ApplicationIntent", "ReadOnly".into()));
            }
            if config.multi_subnet_failover {
                parts.push(("MultiSubnetFailover", "yes".into()));
            }
        }
    }
    parts.push(("Database", config.database.clone()));
    if config.trusted_connection {
        parts.push(("Trusted_Connection", "yes".into()));
    } else {
        if let Some(user) = &config.user {
            parts.push(("UID", user.clone()));
        }
        if let Some(password) = &config.password {
            parts.push(("PWD", password.clone()));
        }
    }
    parts
        .into_iter()
        .map(|(key, value)| format!("{key}={};", quote_value(&value)))
        .collect()
}

/// Wraps a value in braces when it holds characters that would end or confuse the attribute;
/// a `}` inside braces is doubled (ODBC connection string grammar).
fn quote_value(value: &str) -> String {
    let needs_braces = value
        .chars()
        .any(|c| matches!(c, ';' | '{' | '}' | '=' | '[' | ']' | '(' | ')' | ',' | ' '))
        || value.starts_with(char::is_whitespace)
        || value.is_empty();
    if needs_braces {
        format!("{{{}}}", value.replace('}', "}}"))
    } else {
        value.to_owned()
    }
}

/// Keys whose values are secrets in the connection strings of our drivers.
const SECRET_KEYS: &[&str] = &["pwd", "password", "pass", "passwd", "secret", "accesstoken"];

/// The connection string with every password value replaced by `***`, for logs and errors.
pub(crate) fn redact(connection_string: &str) -> String {
    let mut out = String::with_capacity(connection_string.len());
    for (key, value, separator) in attributes(connection_string) {
        out.push_str(key);
        if let Some(value) = value {
            out.push('=');
            if SECRET_KEYS.contains(&key.trim().to_ascii_lowercase().as_str()) {
                out.push_str("***");
            } else {
                out.push_str(value);
            }
        }
        if separator {
            out.push(';');
        }
    }
    out
}

/// The raw values of every password attribute (`PWD=`, `Password=`, ...), braces included.
pub(crate) fn secret_values(connection_string: &str) -> Vec<&str> {
    attributes(connection_string)
        .into_iter()
        .filter(|(key, _, _)| SECRET_KEYS.contains(&key.trim().to_ascii_lowercase().as_str()))
        .filter_map(|(_, value, _)| value)
        .collect()
}

/// Splits into `(key, raw value, followed by ';')`, honouring `{...}` values that may contain
/// `;` and doubled `}}`.
fn attributes(s: &str) -> Vec<(&str, Option<&str>, bool)> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let key_end = s[pos..].find(['=', ';']).map_or(bytes.len(), |i| pos + i);
        let key = &s[pos..key_end];
        if key_end >= bytes.len() || bytes[key_end] == b';' {
            let separator = key_end < bytes.len();
            out.push((key, None, separator));
            pos = key_end + 1;
            continue;
        }
        let value_start = key_end + 1;
        let value_end = braced_value_end(s, value_start).unwrap_or_else(|| {
            s[value_start..]
                .find(';')
                .map_or(bytes.len(), |i| value_start + i)
        });
        let separator = value_end < bytes.len();
        out.push((key, Some(&s[value_start..value_end]), separator));
        pos = value_end + 1;
    }
    out
}

/// If the value at `start` is `{...}` (leading spaces allowed), the index just past its closing
/// brace, skipping doubled `}}`.
fn braced_value_end(s: &str, start: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = start;
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    if i >= bytes.len() || bytes[i] != b'{' {
        return None;
    }
    i += 1;
    while i < bytes.len() {
        if bytes[i] == b'}' {
            if i + 1 < bytes.len() && bytes[i + 1] == b'}' {
                i += 2;
                continue;
            }
            let mut end = i + 1;
            while end < bytes.len() && bytes[end] != b';' {
                end += 1;
            }
            return Some(end);
        }
        i += 1;
    }
    // Unclosed brace: the rest of the string is the value.
    Some(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SqlServerDriver;

    fn base() -> SqlServerConfig {
        SqlServerConfig {
            driver: "ODBC Driver 18 for SQL Server".into(),
            server: "sql01.hospital.local".into(),
            port: Some(1433),
            database: "Clarity".into(),
            user: Some("ehi".into()),
            password: Some("p;a}ss".into()),
            trusted_connection: false,
            encrypt: Encrypt::Yes,
            trust_server_certificate: false,
            host_name_in_certificate: None,
            server_certificate: None,
            read_only_intent: false,
            multi_subnet_failover: false,
        }
    }

    #[test]
    fn driver18_defaults_encrypt_and_verify() {
        assert_eq!(
            sqlserver(&base()),
            "Driver={ODBC Driver 18 for SQL Server};Server={tcp:sql01.hospital.local,1433};\
             Encrypt=yes;TrustServerCertificate=no;Database=Clarity;UID=ehi;PWD={p;a}}ss};"
        );
    }

    #[test]
    fn driver18_certificate_options() {
        let mut config = base();
        config.host_name_in_certificate = Some("sql01.hospital.local".into());
        config.server_certificate = Some("C:\\certs\\sql01.cer".into());
        config.encrypt = Encrypt::Strict;
        config.read_only_intent = true;
        let s = sqlserver(&config);
        assert!(s.contains("Encrypt=strict;"), "{s}");
        assert!(
            s.contains("HostNameInCertificate=sql01.hospital.local;"),
            "{s}"
        );
        assert!(s.contains("ServerCertificate=C:\\certs\\sql01.cer;"), "{s}");
        assert!(s.contains("ApplicationIntent=ReadOnly;"), "{s}");
        assert!(!s.contains("LoginTimeout"), "{s}");
    }

    #[test]
    fn availability_group_listener_keywords() {
        let mut config = base();
        config.read_only_intent = true;
        config.multi_subnet_failover = true;
        let s = sqlserver(&config);
        assert!(
            s.contains("ApplicationIntent=ReadOnly;MultiSubnetFailover=yes;"),
            "{s}"
        );
    }

    #[test]
    fn driver_family_and_version_from_the_name() {
        let family = SqlServerDriver::from_name;
        assert_eq!(
            family("ODBC Driver 17 for SQL Server"),
            SqlServerDriver::Microsoft { major: 17 }
        );
        assert_eq!(
            family("ODBC Driver 18 for SQL Server"),
            SqlServerDriver::Microsoft { major: 18 }
        );
        assert_eq!(family("MSSQL"), SqlServerDriver::Microsoft { major: 18 });
        assert_eq!(family("FreeTDS"), SqlServerDriver::FreeTds);
    }

    #[test]
    fn a_pinned_certificate_needs_driver_18_1() {
        let mut config = base();
        assert!(check_driver_version(&config, "18.00.0001").is_ok());
        config.server_certificate = Some("/etc/ssl/sql01.pem".into());
        let err = check_driver_version(&config, "18.00.0001")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config key 'cert'"), "{err}");
        assert!(err.contains("Driver 18.1 or later"), "{err}");
        assert!(err.contains("version 18.00.0001"), "{err}");
        assert!(check_driver_version(&config, "18.01.0000").is_ok());
        assert!(check_driver_version(&config, "18.06.0002").is_ok());
        assert!(check_driver_version(&config, "").is_ok(), "unknown version");
    }

    #[test]
    fn trust_server_certificate_for_test_servers() {
        let mut config = base();
        config.trust_server_certificate = true;
        config.encrypt = Encrypt::No;
        let s = sqlserver(&config);
        assert!(s.contains("Encrypt=no;TrustServerCertificate=yes;"), "{s}");
    }

    #[test]
    fn windows_authentication_has_no_password() {
        let mut config = base();
        config.trusted_connection = true;
        let s = sqlserver(&config);
        assert!(
            s.ends_with("Database=Clarity;Trusted_Connection=yes;"),
            "{s}"
        );
        assert!(!s.contains("PWD"));
    }

    #[test]
    fn freetds_connection_string() {
        let mut config = base();
        config.driver = "FreeTDS".into();
        config.port = None;
        config.password = Some("pw".into());
        assert_eq!(
            sqlserver(&config),
            "Driver=FreeTDS;Server=sql01.hospital.local;Port=1433;TDS_Version=7.4;\
             ClientCharset=UTF-8;Encryption=require;Database=Clarity;UID=ehi;PWD=pw;"
        );
    }

    #[test]
    fn redacts_plain_and_braced_passwords() {
        assert_eq!(
            redact(&sqlserver(&base())),
            "Driver={ODBC Driver 18 for SQL Server};Server={tcp:sql01.hospital.local,1433};\
             Encrypt=yes;TrustServerCertificate=no;Database=Clarity;UID=ehi;PWD=***;"
        );
        assert_eq!(
            redact("Driver={PostgreSQL Unicode};Server=db;Password=hunter2;Port=5432"),
            "Driver={PostgreSQL Unicode};Server=db;Password=***;Port=5432"
        );
        assert_eq!(redact("DSN=clarity; pwd = x"), "DSN=clarity; pwd =***");
        assert_eq!(redact("DSN=x;PWD={a;b}}c;d}"), "DSN=x;PWD=***");
    }
}
