//! `desk_live`: the latest state of every connected desk, written by the
//! hub it is connected to and read by any hub.

use chrono::{DateTime, Utc};
use proto::device::DeviceState;
use tokio_postgres::GenericClient;

/// One desk's row.
#[derive(Clone, Debug)]
pub struct LiveRow {
    pub desk_id: i64,
    pub connected: bool,
    pub seen_at: DateTime<Utc>,
    pub skew_ms: Option<i64>,
    pub state: Option<serde_json::Value>,
}

/// Upserts these rows in one statement.
pub async fn write(c: &deadpool_postgres::Object, hub: &str, rows: &[LiveRow]) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.desk_id).collect();
    let connected: Vec<bool> = rows.iter().map(|r| r.connected).collect();
    let seen: Vec<DateTime<Utc>> = rows.iter().map(|r| r.seen_at).collect();
    let skew: Vec<Option<i64>> = rows.iter().map(|r| r.skew_ms).collect();
    let state: Vec<Option<serde_json::Value>> = rows.iter().map(|r| r.state.clone()).collect();
    let st = c
        .prepare_cached(
            "INSERT INTO desk_live (desk_id, hub, connected, seen_at, skew_ms, state)
             SELECT u.id, $1, u.connected, u.seen, u.skew, u.state
             FROM unnest($2::bigint[], $3::boolean[], $4::timestamptz[], $5::bigint[], $6::jsonb[])
                  AS u(id, connected, seen, skew, state)
             ON CONFLICT (desk_id) DO UPDATE SET hub = EXCLUDED.hub, connected = EXCLUDED.connected,
                 seen_at = EXCLUDED.seen_at, skew_ms = COALESCE(EXCLUDED.skew_ms, desk_live.skew_ms),
                 state = COALESCE(EXCLUDED.state, desk_live.state)
             WHERE desk_live.hub = EXCLUDED.hub OR EXCLUDED.connected OR NOT desk_live.connected",
        )
        .await?;
    c.execute(&st, &[&hub, &ids, &connected, &seen, &skew, &state]).await?;
    Ok(())
}

/// A desk's row as read back, with the hub it is connected to.
#[derive(Clone, Debug)]
pub struct LiveRead {
    pub desk_id: i64,
    pub hub: String,
    pub connected: bool,
    pub seen_at: DateTime<Utc>,
    pub skew_ms: Option<i64>,
    pub state: Option<DeviceState>,
}

/// The live rows of a room's desks. A state this build cannot read (a
/// newer box's) is kept as unknown, not an error.
pub async fn of_room(c: &impl GenericClient, room_id: i64) -> Result<Vec<LiveRead>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT l.desk_id, l.hub, l.connected, l.seen_at, l.skew_ms, l.state FROM desk_live l
             JOIN desks d ON d.id = l.desk_id WHERE d.room_id = $1",
            &[&room_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LiveRead {
            desk_id: r.get("desk_id"),
            hub: r.get("hub"),
            connected: r.get("connected"),
            seen_at: r.get("seen_at"),
            skew_ms: r.get("skew_ms"),
            state: state(r.get("state")),
        })
        .collect())
}

/// A stored state, typed.
pub fn state(v: Option<serde_json::Value>) -> Option<DeviceState> {
    v.and_then(|v| serde_json::from_value(v).ok())
}
