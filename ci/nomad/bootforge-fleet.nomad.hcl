# bootforge nightly over a fleet: a periodic Nomad batch job that dispatches the builder job
# (ci/nomad/bootforge-builder.nomad.hcl) once per recipe, waits for every builder, then
# packages the four media from the shared store (building nothing itself) and publishes them
# to the same prefix, where the builders already put every blob: a night's release is a
# manifest and a channel pointer.
#
#   nomad job run -var repo=OWNER/bootforge ci/nomad/bootforge-builder.nomad.hcl
#   nomad job run -var repo=OWNER/bootforge ci/nomad/bootforge-fleet.nomad.hcl
#   nomad job periodic force bootforge-fleet            # run once now
#
# The dispatcher talks to Nomad with its workload identity (through the task API socket),
# which may dispatch and read the builder job once this policy is attached to it:
#
#   nomad acl policy apply -namespace default -job bootforge-fleet \
#     bootforge-fleet ci/nomad/bootforge-fleet.policy.hcl
#
# For an arm64 fleet, run both files with -var arch=arm64 -var namespace=bootforge-arm64 (see
# the builder's header): a packager takes the builds of its own architecture.
#
# The packaging node needs the bootforge binary (-var bootforge_bin), git and jq, and
# network access to Nomad's task API and the bucket; no podman, no debootstrap, no root:
# `package --no-build` fails, naming the recipe, if a builder did not deliver. raw_exec must
# be enabled on it as on the builders (the packaging writes only under the task directory).
#
# Settings and secrets: the Nomad Variable nomad/jobs/bootforge-fleet:
#
#   nomad var put nomad/jobs/bootforge-fleet \
#     AWS_ACCESS_KEY_ID=GK... AWS_SECRET_ACCESS_KEY=... \
#     AWS_REGION=garage AWS_ENDPOINT_URL=https://s3.example.org \
#     BOOTFORGE_REMOTE=s3://boot/shared \
#     CHAIN_URL=https://boot.example.org/boot.ipxe \
#     BOOTFORGE_SIGN_KEY=@release.key BUILDERS_PUB=@builders.pub
#
# BUILDERS_PUB is the public key of the builders' signing key: the packager uses only action
# entries signed with it. BOOTFORGE_SIGN_KEY signs the release (manifest and SHA256SUMS).

variable "repo" {
  type    = string
  default = "OWNER/bootforge"
}

variable "ref" {
  type        = string
  description = "The same recipes the builders check out."
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
  type    = string
  default = "amd64"
}

variable "recipes" {
  type        = list(string)
  description = "One builder is dispatched per recipe: what the default media profile uses."
  default     = ["ipxe", "syslinux", "grub", "rpi-firmware"]
}

variable "bootforge_bin" {
  type    = string
  default = "/usr/local/bin/bootforge"
}

job "bootforge-fleet" {
  type        = "batch"
  namespace   = var.namespace
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

  constraint {
    attribute = "${attr.cpu.arch}"
    value     = var.arch
  }

  group "nightly" {
    # A failed night is reported, not retried: the builders' work stays in the shared store,
    # and the next night reuses it.
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    ephemeral_disk {
      size = 1024
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

      identity {
        env = true
      }

      config {
        command = "/usr/bin/timeout"
        args    = ["--kill-after=5m", "4h", "/bin/bash", "${NOMAD_TASK_DIR}/nightly.sh"]
      }

      env {
        PATH              = "/usr/local/bin:/usr/bin:/bin"
        NOMAD_ADDR        = "unix://${NOMAD_SECRETS_DIR}/api.sock"
        RECIPES           = join(" ", var.recipes)
        BOOTFORGE         = var.bootforge_bin
        BOOTFORGE_STORE   = "${NOMAD_TASK_DIR}/store"
        BOOTFORGE_RECIPES = "${NOMAD_TASK_DIR}/bootforge/recipes"
        BOOTFORGE_OUT     = "${NOMAD_ALLOC_DIR}/data/out"
        BUILDERS_PUB_FILE = "${NOMAD_SECRETS_DIR}/builders.pub"
        # The release signing key, written by a template below.
        BOOTFORGE_SIGN_KEY = "${NOMAD_SECRETS_DIR}/release.key"
      }

      template {
        destination = "secrets/fleet.env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/bootforge-fleet" }}{{ range $k, $v := . }}{{ if and (ne $k "BOOTFORGE_SIGN_KEY") (ne $k "BUILDERS_PUB") }}{{ $k }}={{ $v }}
          {{ end }}{{ end }}{{ end }}
        EOT
      }

      template {
        destination = "secrets/release.key"
        perms       = "0600"
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/bootforge-fleet" }}{{ .BOOTFORGE_SIGN_KEY }}{{ end }}
        EOT
      }

      template {
        destination = "secrets/builders.pub"
        change_mode = "noop"
        data        = <<-EOT
          {{- with nomadVar "nomad/jobs/bootforge-fleet" }}{{ .BUILDERS_PUB }}{{ end }}
        EOT
      }

      # The night: dispatch, wait, package, publish. (In this heredoc HCL would read a
      # dollar-brace as its own interpolation, hence the doubled $$.)
      template {
        destination = "local/nightly.sh"
        perms       = "0755"
        change_mode = "noop"
        data        = <<-EOT
          set -euo pipefail
          PATH="$(dirname "$BOOTFORGE"):$PATH"
          cd "$NOMAD_TASK_DIR"

          # One builder per recipe, at once; the scheduler places them on builder nodes.
          ids=()
          for recipe in $RECIPES; do
            id=$(nomad job dispatch -detach -meta "recipe=$recipe" -id-prefix-template "$recipe" \
              bootforge-builder | awk '/^Dispatched Job ID/ {print $NF}')
            [ -n "$id" ] || { echo "dispatching the builder for $recipe failed" >&2; exit 1; }
            echo "dispatched $id"
            ids+=("$id")
          done

          # Wait until every builder is done; a failed one fails the night.
          failed=0
          for id in "$${ids[@]}"; do
            path="/v1/job/$(jq -rn --arg id "$id" '$id|@uri')"
            until [ "$(nomad operator api "$path" | jq -r .Status)" = dead ]; do sleep 15; done
            if nomad operator api "$path/summary" | jq -e '[.Summary[].Complete] | add > 0' >/dev/null \
              && nomad operator api "$path/summary" | jq -e '[.Summary[].Failed] | add == 0' >/dev/null; then
              echo "$id: complete"
            else
              echo "$id: failed (nomad job status $id)" >&2
              failed=1
            fi
          done
          [ "$failed" = 0 ] || exit 1

          # Every build is in the shared store now: package without building anything.
          mkdir -p "$BOOTFORGE_OUT"
          for target in iso usb-img pxe-bundle rpi-img; do
            bootforge package --target "$target" --set "chain_url=$CHAIN_URL" --no-build --remote-verify-key "$BUILDERS_PUB_FILE" -o "$BOOTFORGE_OUT"
          done

          # To the shared store's own prefix: the blobs are there, only the manifest goes up.
          bootforge --json publish --to "$BOOTFORGE_REMOTE" --channel nightly > "$NOMAD_ALLOC_DIR/data/publish.json"
          cat "$NOMAD_ALLOC_DIR/data/publish.json"
        EOT
      }

      resources {
        cpu    = 1000
        memory = 1024
      }

      kill_timeout = "60s"
    }
  }
}
