#!/usr/bin/env python3
"""Checks the scheduler templates in ci/ with the parsers of their engines, and lists the
bootforge commands they run.

None of Nomad, Kubernetes or GitHub Actions runs here, so each template is read by the real
parser (python-hcl2; PyYAML), validated against the engine's schema where one exists
(kubernetes-validate for the Kubernetes API, check-jsonschema's GitHub workflow schema),
and checked for the fields the engine requires and the wiring between the files (the job a
dispatcher dispatches exists and takes the meta it is given, a shard count matches the
matrix or the completions, every `var.` is declared, ...).

    python3 ci/check-schedulers.py          # a line per file; exit 1 on the first problem
    python3 ci/check-schedulers.py --json   # also {"commands": [...]} on stdout

The commands (`bootforge ...` as each template runs them: argv after the shell's
quoting, with the template's variables left in place) are what tests/shared.rs runs against
a real S3 server, so a template calls exactly what the tests exercise.
"""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import hcl2
import kubernetes_validate
import yaml
from hcl2.utils import SerializationOptions

CI = Path(__file__).resolve().parent
NOMAD = sorted((CI / "nomad").glob("*.nomad.hcl"))
NOMAD_POLICIES = sorted((CI / "nomad").glob("*.policy.hcl"))
KUBERNETES = sorted((CI / "kubernetes").glob("*.yaml"))
GITHUB = sorted((CI / "github").glob("*.yml"))
KUBERNETES_VERSION = "1.30.0"


class Problem(Exception):
    pass


def need(cond, file, what):
    if not cond:
        raise Problem(f"{file.relative_to(CI.parent)}: {what}")


# --- commands -------------------------------------------------------------------------------


def shell_commands(script):
    """The bootforge invocations of a shell script, one argv each: lines (continuations
    joined) whose command is `bootforge`, also after `sudo` with its flags and VAR=value."""
    out = []
    for line in re.sub(r"\\\n\s*", " ", script).splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words[:1] == ["sudo"]:
            words = words[1:]
            while words and (words[0].startswith("-") or ASSIGNMENT.fullmatch(words[0])):
                words = words[1:]
        if words[:1] == ["bootforge"]:
            out.append(strip_redirects(words))
    return out


ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


def strip_redirects(words):
    argv = []
    skip = False
    for w in words:
        if skip:
            skip = False
            continue
        if w in (">", ">>", "2>", "<"):
            skip = True
            continue
        if re.fullmatch(r"\d?>>?\S+", w):
            continue
        argv.append(w)
    return argv


def role(argv):
    sub = next((w for w in argv[1:] if not w.startswith("-")), None)
    return "builder" if sub == "build" else "packager"


# --- Nomad ----------------------------------------------------------------------------------

HCL_OPTIONS = SerializationOptions(
    with_comments=False,
    explicit_blocks=False,
    preserve_heredocs=False,
    strip_string_quotes=True,
)


def load_hcl(path):
    with open(path) as f:
        return hcl2.load(f, serialization_options=HCL_OPTIONS)


def hcl_text(s):
    """A string as HCL means it: the parser hands heredocs back escaped, and `$${` / `%%{`
    stand for a literal `${` / `%{`."""
    s = re.sub(r'\\(["\\])', r"\1", s)
    return s.replace("$${", "${").replace("%%{", "%{")


def labelled(blocks):
    """[{label: body}] -> [(label, body)]."""
    return [(k, v) for b in blocks or [] for k, v in b.items()]


def nomad_job(path):
    doc = load_hcl(path)
    jobs = labelled(doc.get("job"))
    need(len(jobs) == 1, path, "a job file holds exactly one job")
    declared = {name for name, _ in labelled(doc.get("variable"))}
    text = path.read_text()
    for used in set(re.findall(r"\bvar\.([a-z_]+)", text)):
        need(used in declared, path, f"var.{used} is used but no variable block declares it")
    return jobs[0], text


def check_nomad_job(path, name, job):
    need(job.get("type") == "batch", path, f"job {name}: type must be batch")
    groups = labelled(job.get("group"))
    need(groups, path, f"job {name}: no group")
    tasks = []
    for gname, group in groups:
        for tname, task in labelled(group.get("task")):
            need(task.get("driver"), path, f"task {tname}: no driver")
            config = (task.get("config") or [{}])[0]
            need(config.get("command"), path, f"task {tname}: config has no command")
            need(task.get("resources"), path, f"task {tname}: no resources")
            tasks.append((tname, task, config))
    need(tasks, path, f"job {name}: no task")
    if name in SHARING:
        need(
            any(c.get("attribute") == "${attr.cpu.arch}" for c in job.get("constraint", [])),
            path,
            f"job {name}: no constraint on ${{attr.cpu.arch}} (a packager finds the builds "
            "of its own architecture)",
        )
    return tasks


# The jobs that share a store: builders and the packager must agree on the architecture.
SHARING = ("bootforge-builder", "bootforge-fleet")


def nomad_commands(path, tasks, bootforge_bin):
    cmds = []
    for _, task, config in tasks:
        if config["command"] in (bootforge_bin, "bootforge"):
            cmds.append(["bootforge"] + list(config.get("args", [])))
        for t in task.get("template", []):
            cmds.extend(shell_commands(hcl_text(t.get("data", ""))))
    return cmds


def check_nomad():
    jobs = {}
    commands = []
    for path in NOMAD:
        (name, job), text = nomad_job(path)
        tasks = check_nomad_job(path, name, job)
        jobs[name] = (path, job, text)
        for argv in nomad_commands(path, tasks, "${var.bootforge_bin}"):
            commands.append(cmd(path, argv))
        print(f"ok  {path.relative_to(CI.parent)}: Nomad job {name}", file=sys.stderr)
    builder = jobs.get("bootforge-builder")
    fleet = jobs.get("bootforge-fleet")
    need(builder and fleet, CI / "nomad", "needs bootforge-builder and bootforge-fleet")
    bpath, bjob, _ = builder
    params = (bjob.get("parameterized") or [{}])[0]
    need(params.get("meta_required") == ["recipe"], bpath, 'parameterized.meta_required must be ["recipe"]')
    need("${NOMAD_META_recipe}" in json.dumps(bjob), bpath, "the task does not use ${NOMAD_META_recipe}")
    fpath, fjob, ftext = fleet
    need((fjob.get("periodic") or [{}])[0].get("crons"), fpath, "periodic.crons is not set")
    flat = re.sub(r"\\\n\s*", " ", ftext)
    need(
        re.search(r'nomad job dispatch\b[^\n]*-meta "recipe=[^\n]*\bbootforge-builder\b', flat),
        fpath,
        "does not dispatch bootforge-builder with -meta recipe=...",
    )
    for path in NOMAD_POLICIES:
        policy = load_hcl(path)
        caps = [c for _, ns in labelled(policy.get("namespace")) for c in ns.get("capabilities", [])]
        need("dispatch-job" in caps and "read-job" in caps, path, "needs dispatch-job and read-job")
        print(f"ok  {path.relative_to(CI.parent)}: Nomad ACL policy", file=sys.stderr)
    return commands


# --- Kubernetes -----------------------------------------------------------------------------


def check_kubernetes():
    commands = []
    for path in KUBERNETES:
        for doc in yaml.safe_load_all(path.read_text()):
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                raise Problem(f"{path.relative_to(CI.parent)}: {e.message} at {list(e.path)}")
            need(doc["kind"] == "Job", path, "expected a batch/v1 Job")
            spec = doc["spec"]
            pod = spec["template"]["spec"]
            need(pod.get("restartPolicy") in ("Never", "OnFailure"), path, "a Job's pods need restartPolicy Never or OnFailure")
            shards = None
            if spec.get("completionMode") == "Indexed":
                shards = spec.get("completions")
                need(shards and spec.get("parallelism") == shards, path, "completions and parallelism must be set and equal")
            for c in pod["containers"]:
                script = " ".join(c.get("command", []) + c.get("args", []))
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                found = shell_commands("\n".join(c.get("args", [])))
                need(found, path, f"container {c['name']} runs no bootforge command")
                if shards:
                    need("JOB_COMPLETION_INDEX" in script, path, "the Indexed Job does not use JOB_COMPLETION_INDEX")
                    need(env.get("SHARDS") == str(shards), path, f"SHARDS must equal completions ({shards})")
                for argv in found:
                    commands.append(cmd(path, argv, shards))
            print(f"ok  {path.relative_to(CI.parent)}: Kubernetes {doc['kind']} {doc['metadata']['name']}", file=sys.stderr)
    return commands


# --- GitHub Actions -------------------------------------------------------------------------


def check_github():
    commands = []
    for path in GITHUB:
        r = subprocess.run(
            ["check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
            capture_output=True,
            text=True,
        )
        need(r.returncode == 0, path, f"not a valid workflow:\n{r.stdout}{r.stderr}")
        wf = yaml.safe_load(path.read_text())
        jobs = wf["jobs"]
        for jname, job in jobs.items():
            need(job.get("runs-on"), path, f"job {jname}: no runs-on")
            for needed in [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []):
                need(needed in jobs, path, f"job {jname} needs {needed}, which does not exist")
            shards = None
            matrix = (job.get("strategy") or {}).get("matrix") or {}
            if "shard" in matrix:
                shards = len(matrix["shard"])
                need(matrix["shard"] == list(range(1, shards + 1)), path, "matrix.shard must be 1..N")
                need(str(job.get("env", {}).get("SHARDS")) == str(shards), path, f"env SHARDS must be {shards}")
            for step in job["steps"]:
                for argv in shell_commands(step.get("run", "")):
                    commands.append(cmd(path, argv, shards))
        if any("shard" in ((j.get("strategy") or {}).get("matrix") or {}) for j in jobs.values()):
            packagers = [n for n, j in jobs.items() if "build" in ([j["needs"]] if isinstance(j.get("needs"), str) else j.get("needs", []))]
            need(packagers, path, "no job needs the sharded build job")
        print(f"ok  {path.relative_to(CI.parent)}: GitHub workflow {wf['name']}", file=sys.stderr)
    return commands


def cmd(path, argv, shards=None):
    return {
        "file": str(path.relative_to(CI.parent)),
        "role": role(argv),
        "shards": shards,
        "argv": argv,
    }


def main():
    try:
        commands = check_nomad() + check_kubernetes() + check_github()
    except Problem as p:
        print(f"check-schedulers: {p}", file=sys.stderr)
        return 1
    if "--json" in sys.argv[1:]:
        json.dump({"commands": commands}, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
