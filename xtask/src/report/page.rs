//! The report as a document, written twice: report.md (figures beside it as files) and a
//! self-contained report.html (figures inlined as base64 PNG).

use base64::Engine as _;

/// One piece of the report.
pub enum Block {
    Heading(String),
    Paragraph(String),
    /// Header cells, then rows.
    Table(Vec<String>, Vec<Vec<String>>),
    /// A figure file written beside the report, and its alternative text.
    Figure {
        file: String,
        alt: String,
    },
}

/// Markdown, figures referenced by relative path.
pub fn markdown(title: &str, blocks: &[Block]) -> String {
    let mut md = format!("# {title}\n");
    for block in blocks {
        md.push('\n');
        match block {
            Block::Heading(text) => md.push_str(&format!("## {text}\n")),
            Block::Paragraph(text) => md.push_str(&format!("{text}\n")),
            Block::Table(header, rows) => {
                let line = |cells: &[String]| {
                    let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
                    format!("| {} |\n", cells.join(" | "))
                };
                md.push_str(&line(header));
                md.push_str(&line(&vec!["---".to_owned(); header.len()]));
                for row in rows {
                    md.push_str(&line(row));
                }
            }
            Block::Figure { file, alt } => md.push_str(&format!("![{alt}]({file})\n")),
        }
    }
    md
}

/// HTML with every figure inlined: `figure_bytes(file)` gives a figure's PNG bytes.
pub fn html(
    title: &str,
    blocks: &[Block],
    figure_bytes: impl Fn(&str) -> Option<Vec<u8>>,
) -> String {
    let mut body = String::new();
    for block in blocks {
        match block {
            Block::Heading(text) => body.push_str(&format!("<h2>{}</h2>\n", escape(text))),
            Block::Paragraph(text) => {
                body.push_str(&format!("<p>{}</p>\n", inline_code(&escape(text))))
            }
            Block::Table(header, rows) => {
                body.push_str("<table>\n<tr>");
                for cell in header {
                    body.push_str(&format!("<th>{}</th>", escape(cell)));
                }
                body.push_str("</tr>\n");
                for row in rows {
                    body.push_str("<tr>");
                    for cell in row {
                        body.push_str(&format!("<td>{}</td>", inline_code(&escape(cell))));
                    }
                    body.push_str("</tr>\n");
                }
                body.push_str("</table>\n");
            }
            Block::Figure { file, alt } => {
                let src = match figure_bytes(file) {
                    Some(bytes) => format!(
                        "data:image/png;base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(bytes)
                    ),
                    None => escape(file),
                };
                body.push_str(&format!(
                    "<figure><img src=\"{src}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
                    escape(alt),
                    escape(alt)
                ));
            }
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n{body}</body>\n</html>\n",
        t = escape(title)
    )
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1060px;margin:2em auto;padding:0 1em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f2f2f2}img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}\
code{background:#f4f4f4;padding:0 .2em}";

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Turns markdown's `code` spans into <code> elements (the only markup the report's text uses).
fn inline_code(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&format!("<code>{part}</code>"));
        } else {
            out.push_str(part);
        }
    }
    out
}
