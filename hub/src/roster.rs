//! The roster CSV of `invigil-hub exam start --roster FILE.csv`: a header
//! `desk,student_id`, then one line a desk. Fields may be quoted; blank
//! lines are skipped. Errors name the line. A desk or a student twice is an
//! error, as is an id `proto::check_id` refuses.

/// One roster line.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seat {
    pub desk: String,
    pub student_id: String,
}

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
    if h.iter().map(|s| s.trim().to_ascii_lowercase()).collect::<Vec<_>>() != ["desk", "student_id"] {
        return Err(format!("{file}: line 1: the header must be desk,student_id (found {header:?})"));
    }
    let mut seats: Vec<(usize, Seat)> = Vec::new();
    for (n, line) in lines {
        let at = format!("{file}: line {}", n + 1);
        let f = fields(line).map_err(|m| format!("{at}: {m}"))?;
        let [desk, student] = f.as_slice() else {
            return Err(format!("{at}: expected 2 fields (desk,student_id), found {}", f.len()));
        };
        let seat = Seat { desk: desk.trim().to_string(), student_id: student.trim().to_string() };
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

/// The ids of one seat (also for the JSON API).
pub fn validate(seat: &Seat) -> Result<(), String> {
    proto::check_id("desk", &seat.desk, proto::batch::MAX_DEVICE_ID_LEN).map_err(|e| e.to_string())?;
    proto::check_id("student_id", &seat.student_id, proto::batch::MAX_ID_LEN).map_err(|e| e.to_string())?;
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
                Seat { desk: "desk-1".into(), student_id: "s1".into() },
                Seat { desk: "desk-2".into(), student_id: "s2".into() }
            ]
        );
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
