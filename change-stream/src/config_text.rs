//! Helpers for reading the connectors' TOML config files.

/// `toml`'s errors span several lines with a source excerpt; this keeps the
/// message, which names the key and the problem, on one line.
pub fn toml_error(e: &toml::de::Error) -> String {
    format!("invalid config: {}", e.message().trim().replace('\n', " "))
}

/// Replaces `${VAR}` with the value of the environment variable VAR; the
/// error says which reference failed.
pub fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "a `${` is not closed with `}`".to_string())?;
        let var = &after[..end];
        let v = std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        std::env::set_var("CONFIG_TEXT_TEST_PW", "s3cret");
        assert_eq!(expand_env("mysql://u:${CONFIG_TEXT_TEST_PW}@h").unwrap(), "mysql://u:s3cret@h");
        assert!(expand_env("mysql://u:${NOPE_NOT_SET_X}@h").unwrap_err().contains("NOPE_NOT_SET_X"));
        assert!(expand_env("mysql://u:${OPEN@h").is_err());
        assert_eq!(expand_env("plain").unwrap(), "plain");
    }
}
