//! Rooms: found by name, created with their first desk or proctor.

use tokio_postgres::GenericClient;

/// A room as the rooms list shows it.
#[derive(Clone, Debug)]
pub struct RoomRow {
    pub id: i64,
    pub name: String,
    /// Desks with a valid token.
    pub desks: i64,
}

/// The room's id, created if new.
pub async fn ensure(c: &impl GenericClient, name: &str) -> Result<i64, tokio_postgres::Error> {
    let row = c
        .query_one(
            "INSERT INTO rooms (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            &[&name],
        )
        .await?;
    Ok(row.get("id"))
}

/// The room's id, if it exists.
pub async fn find(c: &impl GenericClient, name: &str) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(c.query_opt("SELECT id FROM rooms WHERE name = $1", &[&name]).await?.map(|r| r.get("id")))
}

/// Every room with its count of enrolled desks, by name.
pub async fn list(c: &impl GenericClient) -> Result<Vec<RoomRow>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT r.id, r.name, count(d.id) FILTER (WHERE d.token_sha256 IS NOT NULL) AS desks
             FROM rooms r LEFT JOIN desks d ON d.room_id = r.id GROUP BY r.id, r.name ORDER BY r.name",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| RoomRow { id: r.get("id"), name: r.get("name"), desks: r.get("desks") }).collect())
}
