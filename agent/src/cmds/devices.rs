//! `invigil devices`: cameras and the H.264 encoders that really work here.

use crate::Failure;

pub fn run() -> Result<(), Failure> {
    pipeline::init().map_err(Failure::runtime)?;
    println!("cameras (V4L2):");
    let mut found = 0;
    if let Ok(entries) = std::fs::read_dir("/dev") {
        let mut names: Vec<_> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("video")))
            .collect();
        names.sort();
        for p in names {
            let name = std::fs::read_to_string(format!(
                "/sys/class/video4linux/{}/name",
                p.file_name().unwrap().to_string_lossy()
            ))
            .unwrap_or_default();
            println!("  {}  {}", p.display(), name.trim());
            found += 1;
        }
    }
    if found == 0 {
        println!("  none found (a CSI camera is used with source = \"libcamera\" or \"nvargus\")");
    }
    println!("H.264 encoders (probed with 5 frames at 640x480):");
    for (name, result) in pipeline::encoder::working_encoders(640, 480, 30) {
        match result {
            Ok(()) => println!("  {name}: works"),
            Err(e) => println!("  {name}: {e}"),
        }
    }
    Ok(())
}
