//! What each command prints for people: one function per report, writing to stdout (logs
//! and progress go to stderr). `--json` prints the same typed report with serde instead.

use std::io::{Result, Write};
use std::time::Duration;

use crate::base::progress::human_bytes;
use crate::build::{BuildReport, PlanReport, elapsed};
use crate::fetch::{FetchReport, Listing, ObjectListing};
use crate::flash::FlashReport;
use crate::package::{EmbedReport, PackageReport};
use crate::publish::PublishReport;
use crate::store::{BlobInfo, GcReport, Imported, VerifyReport, layout};

pub fn builds(w: &mut dyn Write, reports: &Vec<BuildReport>) -> Result<()> {
    for r in reports {
        let how = if r.cached {
            "cached".to_owned()
        } else {
            format!("built in {}", elapsed(Duration::from_millis(r.duration_ms)))
        };
        let check = r
            .checked_against
            .as_ref()
            .map(|a| format!(", reproducible: identical to {a}"))
            .unwrap_or_default();
        writeln!(
            w,
            "{} ({how}{check}; action {})",
            r.recipe,
            &r.action_key[..16]
        )?;
        for o in &r.outputs {
            writeln!(
                w,
                "  {:<40} {}  {} bytes",
                o.blob.name, o.blob.sha256, o.blob.size
            )?;
        }
    }
    Ok(())
}

pub fn plans(w: &mut dyn Write, plans: &Vec<PlanReport>) -> Result<()> {
    for p in plans {
        let key = p
            .action_key
            .as_deref()
            .unwrap_or("(unknown until the toolchain is built)");
        let state = match p.found {
            Some(crate::store::Origin::Remote) => "hit in the shared store",
            Some(_) => "hit",
            None => "miss",
        };
        writeln!(w, "{}: {state}, action {key}", p.recipe)?;
        for reason in &p.reasons {
            writeln!(w, "  {reason}")?;
        }
    }
    Ok(())
}

pub fn embed(w: &mut dyn Write, r: &EmbedReport) -> Result<()> {
    writeln!(
        w,
        "{}: script {} ({} of {} bytes){}",
        r.recipe,
        r.script,
        r.script_size,
        r.capacity,
        if r.cached { ", cached" } else { "" }
    )?;
    for o in &r.outputs {
        let how = if o.patched { "patched" } else { "unchanged" };
        writeln!(
            w,
            "  {:<40} {}  {} bytes  {how}",
            o.blob.name, o.blob.sha256, o.blob.size
        )?;
    }
    Ok(())
}

pub fn package(w: &mut dyn Write, r: &PackageReport) -> Result<()> {
    writeln!(
        w,
        "{} {}  {} bytes{} (manifest {})",
        r.name,
        r.sha256,
        r.size,
        if r.cached { ", cached" } else { "" },
        r.manifest
    )?;
    for c in &r.contents {
        writeln!(w, "  {:<24} {}  {} bytes", c.path, c.sha256, c.size)?;
    }
    Ok(())
}

pub fn toolchain(w: &mut dyn Write, r: &crate::build::toolchain::Built) -> Result<()> {
    writeln!(
        w,
        "{}: image {} from rootfs {} ({} bytes, {} packages, recorded in {})",
        r.record.name,
        r.record.image,
        r.record.rootfs,
        r.record.size,
        r.record.packages.len(),
        r.lock_file.display()
    )
}

pub fn toolchain_record(
    w: &mut dyn Write,
    r: &crate::build::toolchain::ToolchainRecord,
) -> Result<()> {
    writeln!(
        w,
        "{}: image {} from rootfs {} ({} bytes, {})",
        r.name, r.image, r.rootfs, r.size, r.arch
    )
}

pub fn imported(w: &mut dyn Write, files: &Vec<Imported>) -> Result<()> {
    for i in files {
        writeln!(w, "{}  {}", i.sha256, i.file)?;
    }
    Ok(())
}

pub fn blobs(w: &mut dyn Write, blobs: &Vec<BlobInfo>) -> Result<()> {
    for b in blobs {
        let refs = if b.referenced_by.is_empty() {
            "(unreferenced)".to_owned()
        } else {
            b.referenced_by.join(", ")
        };
        writeln!(w, "{}  {:>12}  {refs}", b.digest, b.size)?;
    }
    let total: u64 = blobs.iter().map(|b| b.size).sum();
    writeln!(w, "{} blobs, {total} bytes", blobs.len())
}

pub fn verify(w: &mut dyn Write, r: &VerifyReport) -> Result<()> {
    for c in &r.corrupt {
        writeln!(w, "corrupt: {c}")?;
    }
    for d in &r.broken_documents {
        writeln!(w, "broken: {d}")?;
    }
    let verdict = if r.is_ok() { "ok" } else { "PROBLEMS FOUND" };
    writeln!(
        w,
        "{} blobs ({} bytes) checked: {verdict}",
        r.blobs_checked, r.bytes_checked
    )
}

pub fn gc(w: &mut dyn Write, r: &GcReport) -> Result<()> {
    writeln!(
        w,
        "removed {} blobs ({} bytes) and {} temporary entries; kept {} blobs",
        r.blobs_removed, r.bytes_removed, r.temp_entries_removed, r.blobs_kept
    )
}

pub fn publish(w: &mut dyn Write, r: &PublishReport) -> Result<()> {
    let moved = match (r.channel_changed, r.previous) {
        (false, _) => ", unchanged".to_owned(),
        (true, Some(p)) => format!(", was {}", p.short(12)),
        (true, None) => ", new channel".to_owned(),
    };
    writeln!(
        w,
        "{} → {}/{} (manifest {}){moved}",
        r.channel,
        r.to,
        layout::manifest(&r.manifest),
        r.manifest
    )?;
    for a in &r.artifacts {
        writeln!(w, "  {:<40} {}  {} bytes", a.name, a.sha256, a.size)?;
    }
    writeln!(
        w,
        "uploaded {} objects ({}), {} already there ({}); {} multipart parts; {}",
        r.uploaded.objects,
        human_bytes(r.uploaded.bytes),
        r.skipped.objects,
        human_bytes(r.skipped.bytes),
        r.multipart_parts,
        elapsed(Duration::from_millis(r.duration_ms))
    )?;
    writeln!(w, "public URL: {}/index.json", r.public_url)
}

pub fn fetch(w: &mut dyn Write, r: &FetchReport) -> Result<()> {
    let mut how = if r.up_to_date {
        "already up to date".to_owned()
    } else if r.resumed_from > 0 {
        format!("resumed at byte {}", r.resumed_from)
    } else {
        "downloaded".to_owned()
    };
    if let Some(c) = r.compressed.as_ref().filter(|_| !r.up_to_date) {
        how.push_str(&format!(
            " as {} ({} bytes, {} verified)",
            c.format,
            c.size,
            c.sha256.short(12)
        ));
    }
    let signed = if r.signature_verified {
        ", signature good"
    } else {
        ""
    };
    writeln!(
        w,
        "{}  {} ({} bytes, {how}, sha256 verified{signed})",
        r.sha256,
        r.path.display(),
        r.size
    )
}

pub fn listing(w: &mut dyn Write, l: &Listing) -> Result<()> {
    writeln!(w, "{}", l.location)?;
    if l.channels.is_empty() {
        writeln!(w, "no channels")?;
    }
    for c in &l.channels {
        writeln!(
            w,
            "channel {} → {} (updated {})",
            c.name, c.manifest, c.updated
        )?;
        for a in &c.artifacts {
            writeln!(
                w,
                "  {:<40} {}  {:>10}",
                a.name,
                a.sha256,
                human_bytes(a.size)
            )?;
        }
    }
    objects(w, "manifests", &l.manifests)?;
    objects(w, "blobs", &l.blobs)
}

fn objects(w: &mut dyn Write, title: &str, items: &Option<Vec<ObjectListing>>) -> Result<()> {
    let Some(items) = items else {
        return Ok(());
    };
    let total: u64 = items.iter().map(|o| o.size).sum();
    writeln!(w, "{title}: {} ({})", items.len(), human_bytes(total))?;
    for o in items {
        writeln!(
            w,
            "  {}  {:>10}  {}  {}",
            o.sha256,
            human_bytes(o.size),
            o.modified.as_deref().unwrap_or("-"),
            o.used_by.join(", ")
        )?;
    }
    Ok(())
}

pub fn keygen(w: &mut dyn Write, k: &crate::base::sign::KeyPair) -> Result<()> {
    writeln!(
        w,
        "secret key: {} (keep it secret; mode 0600)",
        k.secret_key.display()
    )?;
    writeln!(w, "public key: {}", k.public_key.display())?;
    writeln!(
        w,
        "verify with: minisign -Vm SHA256SUMS -P {}",
        k.public_key_base64
    )
}

pub fn secure_boot_keys(w: &mut dyn Write, k: &crate::package::sign::SecureBootKeys) -> Result<()> {
    writeln!(
        w,
        "db key:     {} (keep it secret; mode 0600)",
        k.key.display()
    )?;
    writeln!(
        w,
        "cert:       {} (sha256 {})",
        k.cert.display(),
        k.cert_sha256
    )?;
    writeln!(
        w,
        "for firmware: {} (EFI signature list), {} (signed update for db)",
        k.esl.display(),
        k.auth.display()
    )?;
    writeln!(
        w,
        "for VMs:    {} (PK, KEK and db: this cert; Secure Boot on)",
        k.ovmf_vars.display()
    )?;
    writeln!(w, "under shim: mokutil --import {}", k.cert.display())
}

pub fn flash(w: &mut dyn Write, r: &FlashReport) -> Result<()> {
    writeln!(
        w,
        "wrote {} bytes{} to {}; read back and verified: {}",
        r.bytes,
        if r.decompressed {
            " (decompressed)"
        } else {
            ""
        },
        r.device.display(),
        r.sha256
    )
}

pub fn doctor(w: &mut dyn Write, r: &crate::doctor::Report) -> Result<()> {
    use crate::doctor::Status;
    for c in &r.checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        writeln!(w, "{mark}  {:<17} {}", c.name, c.detail)?;
        if let Some(fix) = &c.fix {
            writeln!(w, "      {:<17} fix: {fix}", "")?;
        }
    }
    let failed = r.checks.iter().filter(|c| c.status == Status::Fail).count();
    match failed {
        0 => writeln!(w, "bootforge can build here."),
        n => writeln!(w, "{n} problem(s) stop builds here: see the fixes above."),
    }
}

pub fn man_pages(w: &mut dyn Write, pages: &Vec<std::path::PathBuf>) -> Result<()> {
    for p in pages {
        writeln!(w, "{}", p.display())?;
    }
    Ok(())
}
