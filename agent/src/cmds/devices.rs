//! `invigil devices`: cameras and the H.264 encoders that really work here.

use crate::Failure;

pub fn run() -> Result<(), Failure> {
    pipeline::init().map_err(Failure::runtime)?;
    println!("cameras (V4L2):");
    let cams = pipeline::devices::cameras();
    if cams.is_empty() {
        println!("  none found (a CSI camera is used with source = \"libcamera\" or \"nvargus\")");
    }
    for c in cams {
        match c {
            Ok(cam) => {
                println!("  {}  {}   (source = \"v4l2:{}\")", cam.path.display(), cam.name, cam.path.display());
                for f in cam.formats {
                    let sizes: Vec<String> = f.sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect();
                    let sizes = if sizes.is_empty() { "any size".to_string() } else { sizes.join(" ") };
                    println!("    {} ({}): {sizes}", f.fourcc, f.description);
                }
            }
            Err((path, e)) => println!("  {}  cannot be queried: {e}", path.display()),
        }
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
