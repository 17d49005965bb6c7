# bootforge builder: a parameterized Nomad batch job that builds one recipe on a node and
# pushes the result to the shared store, a bucket prefix every builder and packager uses.
# ci/nomad/bootforge-fleet.nomad.hcl dispatches it once per recipe every night, then packages
# and publishes; you can dispatch it by hand too:
#
#   nomad job run -var repo=OWNER/bootforge ci/nomad/bootforge-builder.nomad.hcl
#   nomad job dispatch -meta recipe=ipxe bootforge-builder
#
# A recipe already in the shared store (same action key) is taken from it and nothing runs;
# a toolchain another node built is imported from its rootfs instead of debootstrapped.
#
# Architecture: a toolchain image runs where it was built, so actions are per architecture
# and a packager finds the builds of its own. Native arm64 builders (for arm64 packagers)
# are this file again, constrained to arm64 nodes, in a namespace of its own (a job's ID is
# its label, which HCL cannot take from a variable):
#
#   nomad namespace apply bootforge-arm64
#   nomad job run -var arch=arm64 -var namespace=bootforge-arm64 ci/nomad/bootforge-builder.nomad.hcl
#
# Driver: raw_exec, as root: bootforge makes toolchain images with debootstrap and chroot and
# runs each build step in a podman container with the host's podman storage. Enable it on
# the builder nodes: plugin "raw_exec" { config { enabled = true } }
#
# A builder node (Debian or Ubuntu, Nomad client as root) needs podman, runc, uidmap,
# debootstrap (+ debian-archive-keyring on Ubuntu), git, the bootforge binary
# (-var bootforge_bin=..., default /usr/local/bin/bootforge: `cargo install --locked --path .
# --root /usr/local` from a checkout), network access to a Debian mirror, the source hosts
# and the bucket, and a few GB under store_dir, the node's local store (a cache in front of
# the shared one; dispatched builds on one node share it safely).
#
# Settings and secrets: the Nomad Variable nomad/jobs/bootforge-builder, which this job (and
# every job dispatched from it) may read without a policy:
#
#   nomad var put nomad/jobs/bootforge-builder \
#     AWS_ACCESS_KEY_ID=GK... AWS_SECRET_ACCESS_KEY=... \
#     AWS_REGION=garage AWS_ENDPOINT_URL=https://s3.example.org \
#     BOOTFORGE_REMOTE=s3://boot/shared \
#     BOOTFORGE_SIGN_KEY=@builders.key
#
# BOOTFORGE_SIGN_KEY is the minisign secret key from `bootforge keygen --out builders`: every
# action entry is signed with it, and the packagers take only entries that verify with
# builders.pub (see the README, "Many machines", for what an unsigned store trusts).

variable "repo" {
  type        = string
  description = "GitHub owner/name of the bootforge repository (its recipes/ are built)."
  default     = "OWNER/bootforge"
}

variable "ref" {
  type        = string
  description = "Branch, tag or commit of the recipes to build."
  default     = "main"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "namespace" {
  type    = string
  default = "default"
}

variable "arch" {
  type        = string
  description = "The nodes to build on, as Nomad's attr.cpu.arch names them: amd64 or arm64."
  default     = "amd64"
}

variable "bootforge_bin" {
  type    = string
  default = "/usr/local/bin/bootforge"
}

variable "store_dir" {
  type        = string
  description = "The node's local store; it persists between builds."
  default     = "/var/lib/bootforge/store"
}

job "bootforge-builder" {
  type        = "batch"
  namespace   = var.namespace
  datacenters = var.datacenters

  parameterized {
    meta_required = ["recipe"]
  }

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  constraint {
    attribute = "${attr.cpu.arch}"
    value     = var.arch
  }

  group "build" {
    # One retry, on this node or another: a node lost mid-build, a bucket briefly away. A
    # build that fails twice is a recipe to fix; the dispatcher reports it.
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 1
      interval  = "1h"
      unlimited = false
    }

    ephemeral_disk {
      size = 512
    }

    task "build" {
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
        command = var.bootforge_bin
        args    = ["build", "${NOMAD_META_recipe}"]
      }

      env {
        PATH              = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        HOME              = "/root"
        BOOTFORGE_STORE   = var.store_dir
        BOOTFORGE_RECIPES = "${NOMAD_TASK_DIR}/bootforge/recipes"
        # Written by the second template below.
        BOOTFORGE_SIGN_KEY = "${NOMAD_SECRETS_DIR}/builders.key"
      }

      # Every item of the variable but the key, as environment variables: BOOTFORGE_REMOTE,
      # the bucket's credentials, and whichever of AWS_REGION, AWS_ENDPOINT_URL,
      # BOOTFORGE_S3_PATH_STYLE are set (an item left out stays unset, not empty).
      template {
        destination = "secrets/builder.env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/bootforge-builder" }}{{ range $k, $v := . }}{{ if ne $k "BOOTFORGE_SIGN_KEY" }}{{ $k }}={{ $v }}
          {{ end }}{{ end }}{{ end }}
        EOT
      }

      template {
        destination = "secrets/builders.key"
        perms       = "0600"
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/bootforge-builder" }}{{ .BOOTFORGE_SIGN_KEY }}{{ end }}
        EOT
      }

      # Sized for iPXE (make -j, x86 and the arm64 cross build) beside a first debootstrap.
      # podman's containers are not in the task's cgroup: this is what the scheduler
      # reserves, not a limit.
      resources {
        cpu    = 4000
        memory = 4096
      }

      kill_timeout = "60s"
    }
  }
}
