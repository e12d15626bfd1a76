//! docker's `--format` machinery: `table` templates with headers, `json`, plain templates, and
//! column layout as Go's tabwriter does it for docker (min width 10, padding 3, spaces).
use serde_json::{Map, Value};

use super::template::Template;
use super::CliError;

const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// Aligns tab-separated cells into columns. Every cell but the last of a line is padded to its
/// column's width (the longest cell plus 3, at least 10), as `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)`.
pub fn align(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let columns = lines.iter().map(|l| l.len().saturating_sub(1)).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let w = lines.iter().filter(|l| l.len() > c + 1).map(|l| l[c].chars().count()).max().unwrap_or(0);
            (w + PADDING).max(MIN_WIDTH)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        for (i, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < line.len() {
                out.push_str(&" ".repeat(widths[i].saturating_sub(cell.chars().count())));
            }
        }
        out.push('\n');
    }
    out
}

/// How rows are printed: a table (default or `table …`), one template per row, or JSON lines.
pub enum Format {
    Table(Template),
    Rows(Template),
    Json,
}

impl Format {
    /// Parses a `--format` value; `default` is the command's table template.
    pub fn parse(format: Option<&str>, default: &str) -> Result<Format, CliError> {
        let f = format.unwrap_or(default).trim_start();
        let unescape = |s: &str| s.replace("\\t", "\t").replace("\\n", "\n");
        let tpl = |s: &str| Template::parse(&unescape(s)).map_err(|e| CliError::Other(e.to_string()));
        Ok(match f {
            "json" | "{{json .}}" => Format::Json,
            "table" => Format::Table(tpl(default.trim_start_matches("table").trim_start())?),
            f if f.starts_with("table") => Format::Table(tpl(f["table".len()..].trim_start())?),
            f => Format::Rows(tpl(f)?),
        })
    }

    /// Renders rows; `headers` maps each field to its column title.
    pub fn render(&self, rows: &[Value], headers: &Map<String, Value>) -> Result<String, CliError> {
        let err = |e: super::template::TemplateError| CliError::Other(e.to_string());
        Ok(match self {
            Format::Json => rows.iter().map(|r| format!("{r}\n")).collect(),
            Format::Rows(t) => {
                let mut s = String::new();
                for r in rows {
                    s.push_str(&t.render(r).map_err(err)?);
                    s.push('\n');
                }
                s
            }
            Format::Table(t) => {
                let mut s = t.render(&Value::Object(headers.clone())).map_err(err)?;
                s.push('\n');
                for r in rows {
                    s.push_str(&t.render(r).map_err(err)?);
                    s.push('\n');
                }
                align(&s)
            }
        })
    }
}

/// Go's `strconv.Quote` for the printable strings commands are made of.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// docker's `Ellipsis`: at most `max` characters, the last one "…" when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    let count = s.chars().count();
    if count <= max {
        return s.to_string();
    }
    if max <= 3 {
        return s.chars().take(max).collect();
    }
    s.chars().take(max - 1).chain(std::iter::once('…')).collect()
}

/// `sha256:0123…` → the first 12 hex digits, as docker's `TruncateID`.
pub fn short_id(id: &str) -> String {
    let id = id.split_once(':').map_or(id, |(_, hex)| hex);
    id.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_pad_to_the_widest_cell_plus_three_and_at_least_ten() {
        let t = align("CONTAINER ID\tIMAGE\tNAMES\n0123456789ab\tbb:1\tweb\n");
        assert_eq!(t, "CONTAINER ID   IMAGE     NAMES\n0123456789ab   bb:1      web\n");
    }

    #[test]
    fn the_last_column_is_not_padded_and_unicode_counts_as_one() {
        let t = align("a\t\"sh -c 'echo hi; sl…\"\tx\nbb\tc\tyy\n");
        assert_eq!(t, "a         \"sh -c 'echo hi; sl…\"   x\nbb        c                       yy\n");
    }

    #[test]
    fn table_formats_print_headers_then_rows() {
        let f = Format::parse(Some("table {{.ID}}\\t{{.Names}}"), "table {{.ID}}").unwrap_or_else(|e| panic!("{e}"));
        let headers = json!({"ID": "CONTAINER ID", "Names": "NAMES"});
        let rows = [json!({"ID": "abc", "Names": "web"})];
        let s = f.render(&rows, headers.as_object().unwrap_or(&Map::new())).unwrap_or_default();
        assert_eq!(s, "CONTAINER ID   NAMES\nabc            web\n");
    }

    #[test]
    fn plain_and_json_formats_print_one_line_per_row() {
        let rows = [json!({"Names": "a", "Status": "Up 1 second"}), json!({"Names": "b", "Status": "Created"})];
        let f = Format::parse(Some("{{.Names}} {{.Status}}"), "table").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.render(&rows, &Map::new()).unwrap_or_default(), "a Up 1 second\nb Created\n");
        let j = Format::parse(Some("json"), "table").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(j.render(&rows[..1], &Map::new()).unwrap_or_default(), "{\"Names\":\"a\",\"Status\":\"Up 1 second\"}\n");
        assert!(Format::parse(Some("{{.Names"), "table").is_err());
    }

    #[test]
    fn commands_are_quoted_and_cut_like_docker() {
        assert_eq!(go_quote("sh -c \"x\""), "\"sh -c \\\"x\\\"\"");
        assert_eq!(ellipsis("sh -c 'echo started; exec sleep 1000'", 20), "sh -c 'echo started…");
        assert_eq!(ellipsis("true", 20), "true");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
    }
}
