//! The roster CSV of `invigil-hub exam start --roster FILE.csv`: a header
//! `desk,student_id` (optionally `desk,student_id,row,col`: where the desk
//! sits, 1-based, drawn by the room console), then one line a desk. Fields may be quoted; blank
//! lines are skipped. Errors name the line. A desk or a student twice is an
//! error, as is an id `proto::check_id` refuses.

/// One roster line.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seat {
    pub desk: String,
    pub student_id: String,
    /// Row and column in the room (1-based), when the roster gives them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
}

/// Most rows (and columns) of a room's grid.
pub const MAX_GRID: u32 = 200;

/// Most desks in one exam.
pub const MAX_SEATS: usize = 10_000;

/// Parses the CSV text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<Seat>, String> {
    Ok(parse_lines(text, file)?.into_iter().map(|(_, s)| s).collect())
}

/// As [`parse`], with each seat's line number (1-based).
pub fn parse_lines(text: &str, file: &str) -> Result<Vec<(usize, Seat)>, String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(format!("{file}: empty; the first line must be the header desk,student_id"));
    };
    let h = fields(header.trim_start_matches('\u{feff}')).map_err(|m| format!("{file}: line 1: {m}"))?;
    let h: Vec<String> = h.iter().map(|s| s.trim().to_ascii_lowercase()).collect();
    let placed = h == ["desk", "student_id", "row", "col"];
    if h != ["desk", "student_id"] && !placed {
        return Err(format!(
            "{file}: line 1: the header must be desk,student_id or desk,student_id,row,col (found {header:?})"
        ));
    }
    let want = if placed { 4 } else { 2 };
    let mut seats: Vec<(usize, Seat)> = Vec::new();
    for (n, line) in lines {
        let at = format!("{file}: line {}", n + 1);
        let f = fields(line).map_err(|m| format!("{at}: {m}"))?;
        if f.len() != want {
            let names = if placed { "desk,student_id,row,col" } else { "desk,student_id" };
            return Err(format!("{at}: expected {want} fields ({names}), found {}", f.len()));
        }
        let mut seat =
            Seat { desk: f[0].trim().to_string(), student_id: f[1].trim().to_string(), row: None, col: None };
        if placed {
            seat.row = Some(grid_number("row", &f[2]).map_err(|m| format!("{at}: {m}"))?);
            seat.col = Some(grid_number("col", &f[3]).map_err(|m| format!("{at}: {m}"))?);
        }
        validate(&seat).map_err(|m| format!("{at}: {m}"))?;
        if seats.iter().any(|(_, s)| s.desk == seat.desk) {
            return Err(format!("{at}: desk {:?} appears twice", seat.desk));
        }
        if seats.iter().any(|(_, s)| s.student_id == seat.student_id) {
            return Err(format!("{at}: student {:?} appears twice", seat.student_id));
        }
        if seats.len() == MAX_SEATS {
            return Err(format!("{at}: more than {MAX_SEATS} desks"));
        }
        seats.push((n + 1, seat));
    }
    if seats.is_empty() {
        return Err(format!("{file}: no desks after the header"));
    }
    Ok(seats)
}

/// A row or column number: 1 to [`MAX_GRID`].
fn grid_number(name: &str, v: &str) -> Result<u32, String> {
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_GRID).contains(n))
        .ok_or_else(|| format!("{name}: {:?} is not a number 1-{MAX_GRID}", v.trim()))
}

/// The ids of one seat (also for the JSON API), and its place if given.
pub fn validate(seat: &Seat) -> Result<(), String> {
    proto::check_id("desk", &seat.desk, proto::batch::MAX_DEVICE_ID_LEN).map_err(|e| e.to_string())?;
    proto::check_id("student_id", &seat.student_id, proto::batch::MAX_ID_LEN).map_err(|e| e.to_string())?;
    for (name, v) in [("row", seat.row), ("col", seat.col)] {
        if let Some(n) = v {
            grid_number(name, &n.to_string())?;
        }
    }
    Ok(())
}

/// The fields of one CSV line (RFC 4180 quoting, no line breaks in fields).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            (false, ',') => out.push(std::mem::take(&mut cur)),
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    out.push(cur);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_roster_parses_with_quotes_and_blank_lines() {
        let s = parse("desk,student_id\r\ndesk-1,s1\n\n\"desk-2\", \"s2\"\n", "r.csv").unwrap();
        assert_eq!(
            s,
            vec![
                Seat { desk: "desk-1".into(), student_id: "s1".into(), ..Default::default() },
                Seat { desk: "desk-2".into(), student_id: "s2".into(), ..Default::default() }
            ]
        );
    }

    #[test]
    fn a_roster_may_place_its_desks() {
        let s = parse("desk,student_id,row,col\nd1,s1,1,2\n", "r.csv").unwrap();
        assert_eq!((s[0].row, s[0].col), (Some(1), Some(2)));
        assert!(parse("desk,student_id,row,col\nd1,s1,0,2\n", "r.csv").unwrap_err().contains("line 2: row: \"0\""));
        assert!(parse("desk,student_id,row,col\nd1,s1,1\n", "r.csv").unwrap_err().contains("expected 4 fields"));
    }

    #[test]
    fn errors_name_the_line() {
        assert!(parse("desk,student\nd1,s1", "r.csv").unwrap_err().contains("line 1"));
        assert!(parse("desk,student_id\nd1,s1\nd2", "r.csv").unwrap_err().starts_with("r.csv: line 3: expected 2"));
        assert!(
            parse("desk,student_id\nd1,s1\nd1,s2", "r.csv").unwrap_err().contains("line 3: desk \"d1\" appears twice")
        );
        assert!(parse("desk,student_id\nd1,s1\nd2,s1", "r.csv").unwrap_err().contains("student \"s1\" appears twice"));
        assert!(parse("desk,student_id\nd/1,s1", "r.csv").unwrap_err().contains("line 2: desk:"));
        assert!(parse("desk,student_id\n", "r.csv").unwrap_err().contains("no desks"));
    }
}
