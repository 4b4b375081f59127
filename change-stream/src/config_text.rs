//! Helpers for reading the connectors' TOML config files.

/// `toml`'s errors span several lines with a source excerpt; this keeps the
/// message, which names the key and the problem, on one line, with the
/// line number and the `[section]` it is in.
pub fn toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return format!("invalid config: {msg}");
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    // A span that starts at a section's header (a missing key) names that
    // section; otherwise the nearest header above names it.
    let at_line_start = before.is_empty() || before.ends_with('\n');
    let section = text[span.start.min(text.len())..]
        .lines()
        .next()
        .map(str::trim)
        .filter(|l| at_line_start && l.starts_with('['))
        .or_else(|| {
            before
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| l.starts_with('['))
        });
    match section {
        Some(s) => format!("invalid config at line {line}, in {s}: {msg}"),
        None => format!("invalid config at line {line}: {msg}"),
    }
}

/// Replaces `${VAR}` with the value of the environment variable VAR; the
/// error says which reference failed.
/// [`expand_env`] in every value of `kafka.properties` (a SASL password
/// need not be in the file) and in the registry's URL; `Err` names the key.
pub fn expand_kafka_env(
    properties: &mut std::collections::BTreeMap<String, String>,
    registry_url: &mut Option<String>,
) -> Result<(), (String, String)> {
    for (k, v) in properties.iter_mut() {
        *v = expand_env(v).map_err(|p| (format!("kafka.properties.{k}"), p))?;
    }
    if let Some(url) = registry_url {
        *url = expand_env(url).map_err(|p| ("kafka.schema_registry_url".to_string(), p))?;
    }
    Ok(())
}

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
    fn toml_errors_are_one_line_with_the_section() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            source: Inner,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            url: String,
        }
        let text = "[source]\nurl = \"x\"\nbogus = 1\n";
        let e = toml::from_str::<S>(text).unwrap_err();
        let m = toml_error(&e, text);
        assert!(
            m.contains("[source]") && m.contains("bogus") && !m.contains('\n'),
            "{m}"
        );
    }

    #[test]
    fn a_missing_key_names_its_own_section_not_the_one_above() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct S {
            log: Option<toml::Table>,
            kafka: Kafka,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Kafka {
            tables: Vec<String>,
            group_id: String,
        }
        let text = "[log]\nformat = \"json\"\n[kafka]\ntables = [\"a\"]\n";
        let m = toml_error(&toml::from_str::<S>(text).unwrap_err(), text);
        assert!(m.contains("in [kafka]") && m.contains("group_id"), "{m}");
        let text = "[kafka]\ngroup_id = \"g\"\ntables = [1]\n";
        let m = toml_error(&toml::from_str::<S>(text).unwrap_err(), text);
        assert!(m.contains("in [kafka]"), "{m}");
    }

    #[test]
    fn kafka_properties_take_environment_variables() {
        std::env::set_var("CONFIG_TEXT_TEST_SASL", "pw");
        let mut props = std::collections::BTreeMap::from([(
            "sasl.password".to_string(),
            "${CONFIG_TEXT_TEST_SASL}".to_string(),
        )]);
        let mut url = None;
        expand_kafka_env(&mut props, &mut url).unwrap();
        assert_eq!(props["sasl.password"], "pw");
        props.insert("x".into(), "${CONFIG_TEXT_TEST_UNSET_Y}".into());
        assert_eq!(
            expand_kafka_env(&mut props, &mut url).unwrap_err().0,
            "kafka.properties.x"
        );
    }

    #[test]
    fn env_expansion() {
        std::env::set_var("CONFIG_TEXT_TEST_PW", "s3cret");
        assert_eq!(
            expand_env("mysql://u:${CONFIG_TEXT_TEST_PW}@h").unwrap(),
            "mysql://u:s3cret@h"
        );
        assert!(expand_env("mysql://u:${NOPE_NOT_SET_X}@h")
            .unwrap_err()
            .contains("NOPE_NOT_SET_X"));
        assert!(expand_env("mysql://u:${OPEN@h").is_err());
        assert_eq!(expand_env("plain").unwrap(), "plain");
    }
}
