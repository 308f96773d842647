//! In a container, the queue must live on a mounted volume: the container's own filesystem is deleted with it
//! (`docker compose down`, a new image), and with it every webhook acknowledged but not yet delivered.

use std::path::{Path, PathBuf};

/// The variable that lets the relay start anyway.
pub const ALLOW_VAR: &str = "CHATGOWA_ALLOW_EPHEMERAL_DB";

#[derive(Debug, thiserror::Error)]
#[error(
    "the database {database} is on the container's own filesystem ({fstype} at {mount_point}), which is deleted \
     with the container, and the queue with it. Mount a volume at {dir} (docker-compose.yml mounts the volume \
     chatgowa-db there: `chatgowa-db:/app/prisma`), or set {ALLOW_VAR}=true to start anyway"
)]
pub struct EphemeralDatabase {
    pub database: String,
    pub dir: String,
    pub mount_point: String,
    pub fstype: String,
}

/// A line of `/proc/self/mountinfo`, the parts that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
}

/// Refuses a database on a throw-away filesystem when running in a container, unless `allow`.
///
/// # Errors
/// The database directory is not on a mounted volume.
pub fn check_database_volume(database: &Path, allow: bool) -> Result<(), EphemeralDatabase> {
    // Containers that delete their filesystem are a Linux affair; /proc tells where a path is mounted.
    if allow || !cfg!(target_os = "linux") || !in_container() {
        return Ok(());
    }
    let dir = database
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // The directory is created by the database anyway; canonical, it can be matched against mount points.
    let _ = std::fs::create_dir_all(dir);
    let Ok(canonical) = dir.canonicalize() else {
        return Ok(());
    };
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Ok(());
    };
    match mount_of(&mountinfo, &canonical) {
        Some(mount) if throw_away(&mount) => Err(EphemeralDatabase {
            database: database.display().to_string(),
            dir: canonical.display().to_string(),
            mount_point: mount.point.display().to_string(),
            fstype: mount.fstype,
        }),
        _ => Ok(()),
    }
}

/// Docker and Podman leave a marker file; LXC, systemd-nspawn and Podman set `container`.
fn in_container() -> bool {
    Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::env::var_os("container").is_some_and(|v| !v.is_empty())
}

/// Whether files on `mount` disappear with the container: an image's writable layer (overlay, the storage
/// driver Docker and Podman use by default) or memory. A volume or bind mount is a plain filesystem; so is the
/// root of a system container (LXC) or of a machine that merely looks like a container.
pub fn throw_away(mount: &Mount) -> bool {
    matches!(
        mount.fstype.as_str(),
        "overlay" | "aufs" | "fuse-overlayfs" | "tmpfs" | "ramfs"
    )
}

/// The mount that holds `path` (absolute, canonical): the deepest mount point above it, the latest one when
/// several are stacked on the same point.
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    mountinfo
        .lines()
        .filter_map(parse_line)
        .filter(|m| path.starts_with(&m.point))
        .fold(None, |best: Option<Mount>, m| match &best {
            Some(b) if b.point.components().count() > m.point.components().count() => best,
            _ => Some(m),
        })
}

/// `36 35 98:0 /root /mnt rw,noatime master:1 - ext4 /dev/sda1 rw` → mount point `/mnt`, type `ext4`.
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let point = before.split(' ').nth(4)?;
    let fstype = after.split(' ').next()?;
    Some(Mount {
        point: PathBuf::from(unescape(point)),
        fstype: fstype.to_owned(),
    })
}

/// Mount points escape space, tab, newline and backslash as three octal digits (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As seen inside `docker compose up` with the named volume on `/app/prisma`.
    const DOCKER: &str = "\
1044 928 0:211 / / rw,relatime master:478 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/x/diff,workdir=/var/lib/docker/overlay2/x/work
1045 1044 0:214 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
1046 1044 0:215 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
1052 1044 0:216 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro
1055 1044 254:1 /docker/volumes/chatgowa_chatgowa-db/_data /app/prisma rw,relatime master:1 - ext4 /dev/vda1 rw
1056 1044 254:1 /docker/containers/abc/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda1 rw
1057 1044 254:1 /home/me/my\\040data /srv/my\\040data rw,relatime - ext4 /dev/vda1 rw
";

    fn mount(path: &str) -> Mount {
        mount_of(DOCKER, Path::new(path)).unwrap()
    }

    #[test]
    fn the_deepest_mount_point_holds_a_path() {
        assert_eq!(mount("/app/prisma").point, Path::new("/app/prisma"));
        assert_eq!(mount("/app/prisma/sub").fstype, "ext4");
        assert_eq!(mount("/app").point, Path::new("/"));
        assert_eq!(mount("/app/prismatic").point, Path::new("/"));
        assert_eq!(mount("/srv/my data/db").point, Path::new("/srv/my data"));
    }

    #[test]
    fn the_image_layer_and_memory_are_throw_away_volumes_are_not() {
        assert!(throw_away(&mount("/app")));
        assert!(!throw_away(&mount("/app/prisma")));
        assert!(throw_away(&mount("/dev/shm-ish")));
        let lxc_root = Mount {
            point: "/".into(),
            fstype: "ext4".into(),
        };
        assert!(!throw_away(&lxc_root));
    }

    #[test]
    fn stacked_mounts_the_latest_wins() {
        let info = "1 0 0:1 / / rw - ext4 /dev/vda rw\n2 1 0:2 / /data rw - ext4 /dev/vdb rw\n3 1 0:3 / /data rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_of(info, Path::new("/data/x")).unwrap().fstype,
            "tmpfs"
        );
    }

    #[test]
    fn this_machine_has_a_mount_for_every_directory() {
        #[cfg(target_os = "linux")]
        {
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let dir = std::env::temp_dir().canonicalize().unwrap();
            assert!(mount_of(&info, &dir).is_some());
        }
    }
}
