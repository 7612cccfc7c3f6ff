//! The install script: `install.sh` with this manager's URL and architecture baked in, and
//! the agent's unit (packaging/systemd/alien-agent.service, the one source of its text) as
//! the shell function that writes it with the values of the installation.

const TEMPLATE: &str = include_str!("install.sh");
const UNIT: &str = include_str!("../../../packaging/systemd/alien-agent.service");

/// The longest base URL put into a script, as the public manager limits it.
const MAX_URL_LEN: usize = 2048;

/// Ends the here-documents of `write_unit`; no line of the unit reads so.
const UNIT_END: &str = "ALIEN_AGENT_UNIT";

/// Why the base URL cannot be baked into a shell script.
#[derive(Debug, thiserror::Error)]
#[error(
    "the manager's base URL ([server] base-url or BASE_URL) cannot be put into the install \
     script: {0}"
)]
pub struct UnsafeUrl(&'static str);

/// The script for machines reaching this manager at `base_url` (without a trailing `/`).
pub fn render(base_url: &str) -> Result<String, UnsafeUrl> {
    check(base_url)?;
    Ok(fill(
        TEMPLATE,
        &[
            ("@BASE_URL@", base_url),
            ("@ARCH@", std::env::consts::ARCH),
            ("@UNIT@", &unit_writer(base_url)),
        ],
    ))
}

/// The one-liner that installs the agent with `token`; none when the base URL is not one the
/// script can be served with.
pub fn install_command(base_url: &str, token: &str) -> Option<String> {
    check(base_url).ok()?;
    let url = format!("{base_url}/install");
    let plain = url
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~:/@%+=,".contains(&b));
    let url = if plain { url } else { format!("'{url}'") };
    Some(format!("curl -fsSL {url} | sh -s -- --token {token}"))
}

/// The script puts the URL between single quotes, in a here-document and in a systemd
/// `Environment=` line: none of the characters special in any of them is taken, rather than
/// escaped three ways.
fn check(url: &str) -> Result<(), UnsafeUrl> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(UnsafeUrl("it is not an http:// or https:// URL"));
    }
    if url.len() > MAX_URL_LEN {
        return Err(UnsafeUrl("it is longer than 2048 bytes"));
    }
    if url.contains(['\'', '"', '`', '$', '\\']) {
        return Err(UnsafeUrl(
            "it contains a quote, a backtick, a backslash or a '$'",
        ));
    }
    if url.contains(|c: char| c.is_control() || c.is_whitespace()) {
        return Err(UnsafeUrl("it contains a control character or a space"));
    }
    Ok(())
}

/// The shell function `write_unit`, which prints the unit with the script's `BIN`,
/// `TOKEN_FILE`, `DATA_DIR`, `NAME` and `CA_FILE` (the last two only when set) and this
/// manager's URL in place of the packaged file's values.
fn unit_writer(base_url: &str) -> String {
    let open = format!("\tcat <<{UNIT_END}\n");
    let mut code = format!("write_unit() {{\n{open}");
    for line in UNIT.lines() {
        if let Some(args) = line.strip_prefix("ExecStart=/usr/local/bin/alien ") {
            code.push_str(&format!("ExecStart=${{BIN}} {}\n", in_here_document(args)));
        } else if line.starts_with("Environment=SYNC_URL=") {
            // `%` starts a specifier in a unit file.
            let url = in_here_document(&base_url.replace('%', "%%"));
            code.push_str(&format!("Environment=SYNC_URL={url}\n"));
        } else if line.starts_with("Environment=SYNC_TOKEN_FILE=") {
            code.push_str("Environment=SYNC_TOKEN_FILE=${TOKEN_FILE}\n");
        } else if line.starts_with("Environment=DATA_DIR=") {
            code.push_str("Environment=DATA_DIR=${DATA_DIR}\n");
            code.push_str(&format!("{UNIT_END}\n"));
            code.push_str("\tif [ -n \"$NAME\" ]; then\n");
            code.push_str("\t\tprintf 'Environment=OPERATOR_NAME=%s\\n' \"$NAME\"\n");
            code.push_str("\tfi\n");
            code.push_str("\tif [ -n \"$CA_FILE\" ]; then\n");
            code.push_str("\t\tprintf 'Environment=SYNC_CA_FILE=%s\\n' \"$CA_FILE\"\n");
            code.push_str("\tfi\n");
            code.push_str(&open);
        } else {
            code.push_str(&in_here_document(line));
            code.push('\n');
        }
    }
    code.push_str(&format!("{UNIT_END}\n}}"));
    code
}

/// `text` as it must appear in an unquoted here-document to be printed as it is.
fn in_here_document(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '$' | '`') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// `template` with each placeholder replaced by its value, in one pass: a value that holds a
/// placeholder's name is not replaced again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut filled = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('@') {
        filled.push_str(&rest[..at]);
        let from = &rest[at..];
        match values.iter().find(|(name, _)| from.starts_with(name)) {
            Some((name, value)) => {
                filled.push_str(value);
                rest = &from[name.len()..];
            }
            None => {
                filled.push('@');
                rest = &from[1..];
            }
        }
    }
    filled.push_str(rest);
    filled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_carries_the_url_and_the_architecture() {
        let script = render("https://m.example.com/alien").expect("a safe URL");
        assert!(
            script.contains("\nBASE_URL='https://m.example.com/alien'\n"),
            "{script}"
        );
        assert!(script.contains(&format!("\nARCH='{}'\n", std::env::consts::ARCH)));
        assert!(!script.contains("@BASE_URL@") && !script.contains("@UNIT@"));
    }

    #[test]
    fn every_packaged_value_of_the_unit_is_filled_in() {
        let code = unit_writer("https://m.example.com/a%20b");
        for filled in [
            "ExecStart=${BIN} agent\n",
            "Environment=SYNC_URL=https://m.example.com/a%%20b\n",
            "Environment=SYNC_TOKEN_FILE=${TOKEN_FILE}\n",
            "Environment=DATA_DIR=${DATA_DIR}\n",
            "printf 'Environment=OPERATOR_NAME=%s\\n' \"$NAME\"",
            "printf 'Environment=SYNC_CA_FILE=%s\\n' \"$CA_FILE\"",
        ] {
            assert_eq!(code.matches(filled).count(), 1, "{filled:?} in:\n{code}");
        }
        for packaged in [
            "/usr/local/bin/alien",
            "manager.example.com",
            "/etc/alien-agent/token",
            "/var/lib/alien-agent",
        ] {
            assert!(!code.contains(packaged), "{packaged} left in:\n{code}");
        }
        assert!(!UNIT.lines().any(|line| line == UNIT_END));
    }

    #[test]
    fn urls_a_shell_would_interpret_are_refused() {
        for url in [
            "https://m.example.com/'; rm -rf /; '",
            "https://m.example.com/\"",
            "https://m.example.com/$(id)",
            "https://m.example.com/`id`",
            "https://m.example.com/a\\b",
            "https://m.example.com/a\nb",
            "https://m.example.com/a b",
            "ftp://m.example.com",
        ] {
            assert!(render(url).is_err(), "{url:?} was accepted");
            assert_eq!(install_command(url, "ax_dg_1"), None, "{url:?}");
        }
        let long = format!("https://m.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(render(&long).is_err());
        assert!(render(&long[..MAX_URL_LEN]).is_ok());
    }

    #[test]
    fn the_install_command_quotes_only_a_url_that_needs_it() {
        assert_eq!(
            install_command("https://m.example.com:8443/x", "ax_dg_1").as_deref(),
            Some("curl -fsSL https://m.example.com:8443/x/install | sh -s -- --token ax_dg_1")
        );
        assert_eq!(
            install_command("https://m.example.com/a&b", "ax_dg_1").as_deref(),
            Some("curl -fsSL 'https://m.example.com/a&b/install' | sh -s -- --token ax_dg_1")
        );
    }

    #[test]
    fn placeholders_in_values_are_not_filled_again() {
        assert_eq!(
            fill("@A@ and @B@ @C", &[("@A@", "@B@"), ("@B@", "b")]),
            "@B@ and b @C"
        );
    }
}
