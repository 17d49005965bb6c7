# bootforge nightly release as a Nomad periodic batch job: every night at 03:00 UTC it checks
# out the repository and runs ci/nightly.sh (build the recipes, package iso, usb-img,
# pxe-bundle and rpi-img, boot the ISO once under QEMU, publish to the `nightly` channel).
# The GitHub Actions workflow ci/github/nightly.yml runs the same script.
#
# Driver: raw_exec, i.e. straight on the host, as root. bootforge makes toolchain images with
# debootstrap and chroot and runs every build step in a podman container, which needs the
# host's podman, its storage (/var/lib/containers) and root; neither works from inside the
# exec or docker drivers' isolation. Enable raw_exec on the node:
#   plugin "raw_exec" { config { enabled = true } }
#
# The node (a Debian or Ubuntu machine whose Nomad client runs as root) needs:
#   - podman, runc, uidmap             the build containers
#   - debootstrap (+ debian-archive-keyring on Ubuntu)    toolchain images
#   - qemu-system-x86 (with SeaBIOS)   the boot smoke test
#   - git                              the artifact checkout below, and git sources
#   - a Rust toolchain for root (cargo in /root/.cargo/bin or on PATH), or a prebuilt
#     bootforge binary given with -var bootforge_bin=/usr/local/bin/bootforge
#   - xorriso, mtools, dosfstools, ovmf: only to run ci/test.sh there as well; the
#     nightly itself does not use them
#   - network access to a Debian mirror (for debootstrap), github.com, the tarball hosts and the bucket
#   - the client meta bootforge_nightly = "true" (client { meta { ... } }): the job runs only
#     there, so the store below stays on one disk and unchanged inputs are never rebuilt
#   - /var/lib/bootforge (or -var store_dir=...) on a disk with a few GB free
#
# Secrets and settings come from the Nomad Variable nomad/jobs/bootforge-nightly (which this
# job may read without a policy). Set it once; the job waits until it exists:
#
#   nomad var put nomad/jobs/bootforge-nightly \
#     AWS_ACCESS_KEY_ID=GK... AWS_SECRET_ACCESS_KEY=... \
#     AWS_REGION=garage AWS_ENDPOINT_URL=https://s3.example.org \
#     BOOTFORGE_BUCKET=s3://boot/bootforge \
#     BOOTFORGE_PUBLIC_URL=https://boot.example.org/bootforge \
#     CHAIN_URL=https://boot.example.org/boot.ipxe \
#     BOOTFORGE_SIGN_KEY=@bootforge.key
#
# Required items: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, BOOTFORGE_BUCKET, CHAIN_URL,
# BOOTFORGE_SIGN_KEY (the contents of the minisign secret key from `bootforge keygen`;
# `@file` reads it from a file). Optional: AWS_REGION, AWS_ENDPOINT_URL (Garage, MinIO),
# BOOTFORGE_S3_PATH_STYLE (1 forces path-style), BOOTFORGE_PUBLIC_URL,
# BOOTFORGE_KEY_PASSWORD (only for a key made with a password). An item left out renders
# empty, and ci/nightly.sh treats an empty value as unset.
#
#   nomad job run -var repo=OWNER/bootforge ci/nomad/bootforge-nightly.nomad.hcl
#   nomad job periodic force bootforge-nightly          # run once now
#
# The publish report (bootforge --json publish) and the boot test's serial log are kept in
# the allocation: nomad alloc fs <alloc> alloc/data/nightly-report.json

variable "repo" {
  type        = string
  description = "GitHub owner/name of the bootforge repository to check out."
  default     = "OWNER/bootforge"
}

variable "ref" {
  type        = string
  description = "Branch or tag to check out."
  default     = "main"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "store_dir" {
  type        = string
  description = "The bootforge store on the node; it persists between runs."
  default     = "/var/lib/bootforge/store"
}

variable "cargo_target_dir" {
  type        = string
  description = "Cargo's target directory on the node, so each night compiles incrementally."
  default     = "/var/lib/bootforge/cargo-target"
}

variable "bootforge_bin" {
  type        = string
  description = "A bootforge binary on the node; empty: build it from the checkout with cargo."
  default     = ""
}

job "bootforge-nightly" {
  type        = "batch"
  datacenters = var.datacenters

  periodic {
    crons            = ["0 3 * * *"]
    prohibit_overlap = true
    time_zone        = "UTC"
  }

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  # The node with the persistent store (see above).
  constraint {
    attribute = "${meta.bootforge_nightly}"
    value     = "true"
  }

  group "nightly" {
    count = 1

    # A failed night is reported, not retried: the next night starts from the same store.
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    # The checkout, the four media (about 110 MB) and the report; the store and cargo's
    # target directory live on the host (store_dir, cargo_target_dir).
    ephemeral_disk {
      size = 2048
    }

    task "nightly" {
      driver = "raw_exec"

      artifact {
        source      = "git::https://github.com/${var.repo}"
        destination = "local/bootforge"
        options {
          ref   = var.ref
          depth = "1"
        }
      }

      config {
        # With prohibit_overlap a hung run would hold back every later night: give up after
        # four hours (timeout signals the whole process group).
        command = "/usr/bin/timeout"
        args = [
          "--kill-after=5m", "4h",
          "/bin/bash", "${NOMAD_TASK_DIR}/bootforge/ci/nightly.sh",
        ]
      }

      env {
        # debootstrap and chroot live in sbin; cargo in root's ~/.cargo/bin.
        PATH             = "/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        HOME             = "/root"
        BOOTFORGE_STORE  = var.store_dir
        CARGO_TARGET_DIR = var.cargo_target_dir
        BOOTFORGE        = var.bootforge_bin
        # Written by the second template below.
        BOOTFORGE_SIGN_KEY = "${NOMAD_SECRETS_DIR}/bootforge.key"
        BOOTFORGE_OUT      = "${NOMAD_ALLOC_DIR}/data/out"
        BOOTFORGE_REPORT   = "${NOMAD_ALLOC_DIR}/data/nightly-report.json"
        BOOT_SMOKE_LOG     = "${NOMAD_ALLOC_DIR}/data/boot-smoke-serial.log"
      }

      # Settings and credentials as environment variables (env = true): the file is read
      # into the task's environment, and kept in the secrets directory.
      template {
        destination = "secrets/nightly.env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/bootforge-nightly" -}}
          AWS_ACCESS_KEY_ID={{ .AWS_ACCESS_KEY_ID }}
          AWS_SECRET_ACCESS_KEY={{ .AWS_SECRET_ACCESS_KEY }}
          AWS_ENDPOINT_URL={{ .AWS_ENDPOINT_URL }}
          AWS_REGION={{ .AWS_REGION }}
          BOOTFORGE_S3_PATH_STYLE={{ .BOOTFORGE_S3_PATH_STYLE }}
          BOOTFORGE_BUCKET={{ .BOOTFORGE_BUCKET }}
          BOOTFORGE_PUBLIC_URL={{ .BOOTFORGE_PUBLIC_URL }}
          BOOTFORGE_KEY_PASSWORD={{ .BOOTFORGE_KEY_PASSWORD }}
          CHAIN_URL={{ .CHAIN_URL }}
          {{- end }}
        EOT
      }

      # The minisign secret key, readable by root only.
      template {
        destination = "secrets/bootforge.key"
        perms       = "0600"
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/bootforge-nightly" }}{{ .BOOTFORGE_SIGN_KEY }}{{ end }}
        EOT
      }

      # Sized for the iPXE build (x86 and arm64 cross in one container, make -j) running
      # beside debootstrap on the first night. podman's containers are not in the task's
      # cgroup, so this is what the scheduler reserves rather than a hard limit.
      resources {
        cpu    = 4000
        memory = 4096
      }

      kill_timeout = "60s"
    }
  }
}
