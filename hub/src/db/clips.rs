//! Incidents as clip uploads see them, and the clip rows.

use tokio_postgres::GenericClient;

/// An incident a desk may upload a clip for.
#[derive(Clone, Debug)]
pub struct IncidentRef {
    pub id: i64,
    pub session_id: Option<String>,
    pub student_id: Option<String>,
}

/// Who owns an incident id, from one desk's point of view.
#[derive(Clone, Debug)]
pub enum Owner {
    This(IncidentRef),
    /// Only other desks have an incident with this id.
    Other,
    Unknown,
}

/// The incident `key` of `desk`, or whether another desk has one.
pub async fn owner(c: &impl GenericClient, desk: i64, key: &str) -> Result<Owner, tokio_postgres::Error> {
    let rows =
        c.query("SELECT id, desk_id, session_id, student_id FROM incidents WHERE incident_key = $1", &[&key]).await?;
    if let Some(r) = rows.iter().find(|r| r.get::<_, i64>(1) == desk) {
        return Ok(Owner::This(IncidentRef { id: r.get(0), session_id: r.get(2), student_id: r.get(3) }));
    }
    Ok(if rows.is_empty() { Owner::Unknown } else { Owner::Other })
}

/// Records (or replaces, for a re-upload) a clip.
pub async fn record(
    c: &impl GenericClient,
    incident: i64,
    part: i32,
    key: &str,
    bytes: i64,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO clips (incident_id, part, object_key, bytes, uploaded_at) VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (incident_id, part) DO UPDATE SET object_key = EXCLUDED.object_key, bytes = EXCLUDED.bytes,
             uploaded_at = EXCLUDED.uploaded_at",
        &[&incident, &part, &key, &bytes],
    )
    .await?;
    Ok(())
}

/// A clip of an incident: its room id, object key and size.
pub async fn find(
    c: &impl GenericClient,
    incident: i64,
    part: i32,
) -> Result<Option<(i64, String, i64)>, tokio_postgres::Error> {
    Ok(c.query_opt(
        "SELECT d.room_id, c.object_key, c.bytes FROM clips c JOIN incidents i ON i.id = c.incident_id
             JOIN desks d ON d.id = i.desk_id WHERE c.incident_id = $1 AND c.part = $2",
        &[&incident, &part],
    )
    .await?
    .map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// The room id of an incident.
pub async fn incident_room(c: &impl GenericClient, incident: i64) -> Result<Option<i64>, tokio_postgres::Error> {
    Ok(c.query_opt("SELECT d.room_id FROM incidents i JOIN desks d ON d.id = i.desk_id WHERE i.id = $1", &[&incident])
        .await?
        .map(|r| r.get(0)))
}
