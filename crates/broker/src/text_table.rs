//! Plain, space-aligned text tables for the commands' output (`check`,
//! `status`).

/// `header` and `rows` as lines of columns separated by two spaces, each
/// column as wide as its widest cell; the last column is not padded and no
/// line has trailing spaces. Every line ends with a newline.
pub fn render<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            l.push_str(cell);
            if i + 1 < N {
                l.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_and_lines_have_no_trailing_space() {
        let t = super::render(
            ["A", "LONG HEADER", "C"],
            &[
                ["wide cell".into(), "x".into(), "".into()],
                ["b".into(), "y".into(), "last".into()],
            ],
        );
        assert_eq!(
            t,
            "A          LONG HEADER  C\nwide cell  x\nb          y            last\n"
        );
        assert_eq!(super::render(["H"], &[]), "H\n");
    }
}
