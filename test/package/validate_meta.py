#!/usr/bin/env python3
"""Validates META.json against the PGXN Meta Spec 1.0.0, with the standard library alone.

Usage: python3 test/package/validate_meta.py [path/to/META.json]

Checks the keys and types the spec (https://pgxn.org/meta/spec.txt, and the
JSON Schemas of pgxn/meta, schema/v1/) requires and allows, then that the
versions agree with the tree: stripepay.control's default_version, the newest
install script sql/<extension>--X.sql, the file "provides" names, and the
upstream part of debian/changelog's version.  Prints one "ok - ..." or
"not ok - ..." line per check, then "meta: N passed, M failed"; exits 1 when a
check failed.
"""
import json
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
SEMVER_BODY = SEMVER.pattern[1:-1]
RANGE_ONE = r"(?:(?:[=!]=|[<>]=?)\s*)?(?:%s|0)" % SEMVER_BODY
VERSION_RANGE = re.compile(r"^%s(?:\s*,\s*%s)*$" % (RANGE_ONE, RANGE_ONE))
CUSTOM = re.compile(r"^[xX]_.")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LICENSES = {
    "agpl_3", "apache_1_1", "apache_2_0", "artistic_1", "artistic_2", "bsd",
    "freebsd", "gfdl_1_2", "gfdl_1_3", "gpl_1", "gpl_2", "gpl_3", "lgpl_2_1",
    "lgpl_3_0", "mit", "mozilla_1_0", "mozilla_1_1", "openssl", "perl_5",
    "postgresql", "qpl_1_0", "ssleay", "sun", "zlib", "open_source",
    "restricted", "unrestricted", "unknown",
}
TOP_KEYS = {
    "name", "version", "abstract", "maintainer", "license", "provides",
    "meta-spec", "description", "generated_by", "tags", "no_index", "prereqs",
    "release_status", "resources",
}
REQUIRED = ["name", "version", "abstract", "maintainer", "license", "provides", "meta-spec"]
PHASES = {"configure", "build", "test", "runtime", "develop"}
RELATIONS = {"requires", "recommends", "suggests", "conflicts"}


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what, why=""):
        if cond:
            self.passed += 1
            print("ok - %s" % what)
        else:
            self.failed += 1
            print("not ok - %s%s" % (what, ": " + why if why else ""))
        return cond


def is_term(s):
    """A Term: 2+ characters, no slash, backslash, whitespace or control character."""
    return isinstance(s, str) and len(s) >= 2 and not re.search(r"[/\\\s\x00-\x1f\x7f]", s)


def is_tag(s):
    return (isinstance(s, str) and 2 <= len(s) <= 255
            and not re.search(r"[/\\\x00-\x1f\x7f]", s))


def is_path(s):
    """A relative path in Unix convention, 2+ characters."""
    return (isinstance(s, str) and len(s) >= 2 and not s.startswith("/")
            and "\\" not in s and ".." not in s.split("/"))


def nonempty_str(v):
    return isinstance(v, str) and len(v) > 0


def unknown_keys(obj, allowed):
    return sorted(k for k in obj if k not in allowed and not CUSTOM.match(k))


def semver_key(v):
    m = SEMVER.match(v)
    return tuple(int(x) for x in m.groups()[:3]) if m else None


def check_spec(meta, r):
    r.check(isinstance(meta, dict), "META.json is a JSON object")
    if not isinstance(meta, dict):
        return
    missing = [k for k in REQUIRED if k not in meta]
    r.check(not missing, "required keys present (%s)" % ", ".join(REQUIRED),
            "missing " + ", ".join(missing))
    extra = unknown_keys(meta, TOP_KEYS)
    r.check(not extra, "no top-level key outside the spec (custom keys start with x_)",
            "unknown " + ", ".join(extra))

    ms = meta.get("meta-spec")
    r.check(isinstance(ms, dict) and isinstance(ms.get("version"), str)
            and re.match(r"^1\.0\.\d+$", ms["version"]) is not None
            and not unknown_keys(ms, {"version", "url"}),
            "meta-spec: an object whose version is 1.0.x", repr(ms))
    if isinstance(ms, dict) and "url" in ms:
        r.check(ms["url"] in ("https://pgxn.org/meta/spec.txt", "http://pgxn.org/meta/spec.txt"),
                "meta-spec.url is the spec's", repr(ms["url"]))

    r.check(is_term(meta.get("name")), "name is a term", repr(meta.get("name")))
    r.check(isinstance(meta.get("version"), str) and SEMVER.match(meta["version"]) is not None,
            "version is a semantic version", repr(meta.get("version")))
    r.check(nonempty_str(meta.get("abstract")), "abstract is a non-empty string")
    if "description" in meta:
        r.check(nonempty_str(meta["description"]), "description is a non-empty string")
    if "generated_by" in meta:
        r.check(nonempty_str(meta["generated_by"]), "generated_by is a non-empty string")

    mt = meta.get("maintainer")
    r.check(nonempty_str(mt) or (isinstance(mt, list) and mt and all(nonempty_str(x) for x in mt)),
            "maintainer is a string or a non-empty list of strings", repr(mt))

    lic = meta.get("license")
    ok = (isinstance(lic, str) and lic in LICENSES) or \
         (isinstance(lic, list) and lic and all(x in LICENSES for x in lic)) or \
         (isinstance(lic, dict) and lic and all(isinstance(v, str) and URI.match(v) for v in lic.values()))
    r.check(ok, "license is a known shortcut, a list of them, or names mapped to URIs", repr(lic))

    prov = meta.get("provides")
    if r.check(isinstance(prov, dict) and len(prov) > 0, "provides is a non-empty object"):
        for ext, spec in sorted(prov.items()):
            good = is_term(ext) and isinstance(spec, dict)
            why = ""
            if good:
                bad = unknown_keys(spec, {"file", "version", "abstract", "docfile", "docpath"})
                if bad:
                    good, why = False, "unknown keys " + ", ".join(bad)
                elif not is_path(spec.get("file")):
                    good, why = False, "file is not a relative path"
                elif not (isinstance(spec.get("version"), str) and SEMVER.match(spec["version"])):
                    good, why = False, "version is not a semantic version"
                elif "abstract" in spec and not nonempty_str(spec["abstract"]):
                    good, why = False, "abstract is empty"
                elif "docfile" in spec and not is_path(spec["docfile"]):
                    good, why = False, "docfile is not a relative path"
            r.check(good, "provides.%s: file, version (and abstract, docfile) well formed" % ext, why)
            if good:
                for key in ("file", "docfile"):
                    if key in spec:
                        r.check(os.path.isfile(os.path.join(ROOT, spec[key])),
                                "provides.%s.%s exists: %s" % (ext, key, spec[key]))

    if "tags" in meta:
        tags = meta["tags"]
        r.check(isinstance(tags, list) and tags and all(is_tag(t) for t in tags),
                "tags is a non-empty list of 2-255 character strings without / or \\", repr(tags))

    if "release_status" in meta:
        r.check(meta["release_status"] in ("stable", "testing", "unstable"),
                "release_status is stable, testing or unstable", repr(meta["release_status"]))

    if "no_index" in meta:
        ni = meta["no_index"]
        ok = isinstance(ni, dict) and ("file" in ni or "directory" in ni) and not unknown_keys(ni, {"file", "directory"})
        if ok:
            for key in ("file", "directory"):
                v = ni.get(key)
                if v is None:
                    continue
                items = v if isinstance(v, list) else [v]
                ok = ok and len(items) > 0 and len(set(items)) == len(items) and all(is_path(x) for x in items)
        r.check(ok, "no_index has file and/or directory, relative paths", repr(ni))

    if "prereqs" in meta:
        pr = meta["prereqs"]
        problems = []
        if not isinstance(pr, dict) or not pr:
            problems.append("not a non-empty object")
        else:
            for phase, rels in pr.items():
                if CUSTOM.match(phase):
                    continue
                if phase not in PHASES:
                    problems.append("unknown phase %r" % phase)
                    continue
                if not isinstance(rels, dict) or not rels:
                    problems.append("%s: not a non-empty object" % phase)
                    continue
                for rel, deps in rels.items():
                    if CUSTOM.match(rel):
                        continue
                    if rel not in RELATIONS:
                        problems.append("%s: unknown relationship %r" % (phase, rel))
                        continue
                    if not isinstance(deps, dict) or not deps:
                        problems.append("%s.%s: not a non-empty object" % (phase, rel))
                        continue
                    for name, rng in deps.items():
                        if not is_term(name):
                            problems.append("%s.%s: %r is not a term" % (phase, rel, name))
                        if not (rng == 0 or (isinstance(rng, str) and VERSION_RANGE.match(rng))):
                            problems.append("%s.%s.%s: %r is not a version range" % (phase, rel, name, rng))
        r.check(not problems, "prereqs: phases, relationships, names and version ranges",
                "; ".join(problems))
        pg = (pr.get("runtime", {}).get("requires", {}) if isinstance(pr, dict) else {}).get("PostgreSQL")
        r.check(pg is not None, "prereqs.runtime.requires names PostgreSQL", repr(pg))

    if "resources" in meta:
        res = meta["resources"]
        problems = []
        if not isinstance(res, dict) or not res:
            problems.append("not a non-empty object")
        else:
            problems += ["unknown key %r" % k for k in unknown_keys(res, {"homepage", "bugtracker", "repository"})]
            if "homepage" in res and not (isinstance(res["homepage"], str) and URI.match(res["homepage"])):
                problems.append("homepage is not a URI")
            bt = res.get("bugtracker")
            if bt is not None:
                if not isinstance(bt, dict) or not ("web" in bt or "mailto" in bt) or unknown_keys(bt, {"web", "mailto"}):
                    problems.append("bugtracker needs web and/or mailto")
                else:
                    if "web" in bt and not URI.match(str(bt["web"])):
                        problems.append("bugtracker.web is not a URI")
                    if "mailto" in bt and not EMAIL.match(str(bt["mailto"])):
                        problems.append("bugtracker.mailto is not an address")
            rp = res.get("repository")
            if rp is not None:
                if not isinstance(rp, dict) or unknown_keys(rp, {"url", "web", "type"}) or \
                        not ("web" in rp or ("url" in rp and "type" in rp)):
                    problems.append("repository needs web, or url with type")
                else:
                    for k in ("url", "web"):
                        if k in rp and not URI.match(str(rp[k])):
                            problems.append("repository.%s is not a URI" % k)
                    if "type" in rp and not (isinstance(rp["type"], str) and rp["type"] == rp["type"].lower()):
                        problems.append("repository.type is not a lowercase string")
        r.check(not problems, "resources: homepage, bugtracker, repository well formed", "; ".join(problems))


def control_version(ext):
    path = os.path.join(ROOT, ext + ".control")
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\s*default_version\s*=\s*'([^']*)'", line)
            if m:
                return m.group(1)
    return None


def newest_install_script(ext):
    """The newest sql/<ext>--X.sql that is an install script (not an upgrade A--B)."""
    best = None
    sqldir = os.path.join(ROOT, "sql")
    for fn in os.listdir(sqldir):
        m = re.match(r"^%s--([^-][^/]*?)\.sql$" % re.escape(ext), fn)
        if not m or "--" in m.group(1):
            continue
        key = semver_key(m.group(1))
        if key is not None and (best is None or key > best[0]):
            best = (key, m.group(1), "sql/" + fn)
    return best


def debian_upstream_version():
    path = os.path.join(ROOT, "debian", "changelog")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        m = re.match(r"^\S+ \(([^)]+)\)", f.readline())
    if not m:
        return None
    v = m.group(1).split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def check_tree(meta, r):
    if not isinstance(meta, dict):
        return
    name = meta.get("name")
    version = meta.get("version")
    prov = meta.get("provides") if isinstance(meta.get("provides"), dict) else {}
    ext = name if name in prov else (sorted(prov)[0] if prov else name)
    if not isinstance(ext, str) or not os.path.isfile(os.path.join(ROOT, "%s.control" % ext)):
        r.check(False, "%s.control exists" % ext)
        return
    cv = control_version(ext)
    r.check(cv == version, "version %s is %s.control's default_version" % (version, ext), "control says %r" % cv)
    newest = newest_install_script(ext)
    r.check(newest is not None and newest[1] == version,
            "version %s is that of the newest install script" % version,
            "newest is %s" % (newest[2] if newest else "none"))
    spec = prov.get(ext, {})
    if isinstance(spec, dict):
        r.check(spec.get("version") == version,
                "provides.%s.version is the distribution's version" % ext, repr(spec.get("version")))
        want = "sql/%s--%s.sql" % (ext, version)
        r.check(spec.get("file") == want, "provides.%s.file is %s" % (ext, want), repr(spec.get("file")))
    dv = debian_upstream_version()
    if dv is not None:
        r.check(dv == version, "debian/changelog's upstream version is %s" % version, "it is %r" % dv)
    changelog = os.path.join(ROOT, "CHANGELOG.md")
    if os.path.isfile(changelog):
        with open(changelog, encoding="utf-8") as f:
            text = f.read()
        r.check(re.search(r"^## %s\b" % re.escape(str(version)), text, re.M) is not None,
                "CHANGELOG.md has a section for %s" % version)


def main(argv):
    path = argv[1] if len(argv) > 1 else os.path.join(ROOT, "META.json")
    r = Results()
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        r.check(True, "%s is valid JSON" % os.path.relpath(path, ROOT))
    except (OSError, ValueError) as e:
        r.check(False, "%s is valid JSON" % path, str(e))
        meta = None
    if meta is not None:
        check_spec(meta, r)
        check_tree(meta, r)
    print("meta: %d passed, %d failed" % (r.passed, r.failed))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
