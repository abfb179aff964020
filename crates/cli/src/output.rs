//! Output formats (JSON lines for programs, tables for people) and confirmation prompts.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;

use crate::usage;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// One JSON object per line.
    Json,
    /// For people: an aligned table, or sentences.
    Table,
}

impl OutputFormat {
    /// The chosen format, or the default: a table for a person at a terminal, JSON lines when
    /// stdout goes to a pipe or a file (so scripts never parse a table by accident).
    pub(crate) fn resolve(chosen: Option<OutputFormat>) -> OutputFormat {
        match chosen {
            Some(format) => format,
            None if std::io::stdout().is_terminal() => OutputFormat::Table,
            None => OutputFormat::Json,
        }
    }
}

/// Writes `rows` under `headers`, each column as wide as its widest cell.
pub(crate) fn write_table(
    out: &mut impl Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied()))?;
    for row in rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str)))?;
    }
    Ok(())
}

/// Prints `lines` to stdout as JSON lines, or as a table under `headers` with a row per line from
/// `row` (and `empty` instead when there are none).
pub(crate) fn print_listing<L: serde::Serialize>(
    format: OutputFormat,
    lines: &[L],
    headers: &[&str],
    empty: &str,
    row: impl Fn(&L) -> Vec<String>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        OutputFormat::Json => {
            for line in lines {
                write_json_line(&mut out, line)?;
            }
        }
        OutputFormat::Table if lines.is_empty() => {
            writeln!(out, "{empty}").context("writing to stdout")?;
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = lines.iter().map(row).collect();
            write_table(&mut out, headers, &rows).context("writing to stdout")?;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// Prints what a command did: `text` (sentences, one per line) for a person, or `value` as one JSON
/// line for a program.
pub(crate) fn report(
    format: OutputFormat,
    value: &impl serde::Serialize,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        OutputFormat::Json => write_json_line(&mut out, value)?,
        OutputFormat::Table => writeln!(out, "{}", text()).context("writing to stdout")?,
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// Writes one JSON line.
pub(crate) fn write_json_line(
    out: &mut impl Write,
    value: &impl serde::Serialize,
) -> anyhow::Result<()> {
    // Encoded first, so that a failed write is an `io::Error` that `ends_at_closed_pipe` can
    // recognise (serde_json's own error does not expose it as a cause), and a line is written
    // whole or not at all.
    let mut line = serde_json::to_vec(value).context("encoding output as JSON")?;
    line.push(b'\n');
    out.write_all(&line).context("writing to stdout")?;
    Ok(())
}

/// `result`, except that a write to a closed pipe counts as success: the reader (`| head -n 5`)
/// stopped because it had what it wanted. Only for commands that read: one that changes
/// something must not report success for work a closed pipe cut short.
pub(crate) fn ends_at_closed_pipe(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(err) if is_closed_pipe(&err) => Ok(()),
        other => other,
    }
}

/// Whether `err` comes from writing to a pipe whose reader is gone. Rust ignores SIGPIPE, so the
/// write fails with `BrokenPipe` instead of ending the process.
fn is_closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A checkpoint as a table cell: `position/in_tx_order`, `-` before the first event.
pub(crate) fn checkpoint_cell(position: Option<&str>, in_tx_order: Option<u32>) -> String {
    match (position, in_tx_order) {
        (Some(position), Some(order)) => format!("{position}/{order}"),
        _ => "-".to_owned(),
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// Asks "`question` [y/N]" on stderr and reads the answer from stdin, unless `yes`.
///
/// Without a terminal on stdin nobody can answer, so it refuses (exit code 2) instead of reading a
/// line a script did not mean as an answer.
pub(crate) fn confirm(question: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!(
            "{question}: confirmation needed, but stdin is not a terminal; pass --yes to proceed"
        )));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().context("writing the prompt")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => anyhow::bail!("aborted: nothing was done"),
    }
}
