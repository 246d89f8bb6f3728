#!/usr/bin/env python3
"""Record the real execution of one Python call as CWM trace frames.

Standalone and standard-library only, written in Python 3.7 syntax: the harness copies this
file into a container or runs it with a repository's old interpreter. Never import cwm_agent.

    python tracer.py --root DIR --target path.py::func --call "func('x')" [--out FILE]
    python tracer.py --root DIR --target pkg.mod::Class::method      # calls Class().method()

Output is one JSON document: {"frames": [...], "cut", "reason", "error", "returned", ...}.
A frame is {"event", "line", "source", "locals", "value"}: event is call/line/return/exception,
locals maps names to repr strings (state *before* the line runs), ".." marks a value unchanged
since the previous frame of the same scope, value is the repr returned or raised.

Exit status: 0 when the call ran (even if it raised or the trace was cut), 2 when the target
could not be loaded (the document then has a "fatal" message).
"""
# ruff: noqa: UP004, UP031  (Python 3.7 syntax on purpose: this file runs on old interpreters)

import argparse
import dis
import importlib
import importlib.util
import io
import json
import linecache
import os
import platform
import re
import signal
import sys
import time

FORMAT_VERSION = 1
UNCHANGED = ".."
RETURNED_LIMIT = 100000
STDOUT_LIMIT = 20000
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_HERE = os.path.realpath(__file__)
_FOR_ITER = dis.opmap.get("FOR_ITER")
_STARTED_AS = os.getpid()


class TraceCut(BaseException):
    """Raised into the traced code to stop it (BaseException: `except Exception` won't eat it)."""


class TargetError(Exception):
    """The target could not be located or loaded."""


def clean_repr(value, limit):
    """repr() without memory addresses, cut to `limit` characters."""
    try:
        text = repr(value)
    except Exception as exc:
        text = "<unrepresentable %s: %s>" % (type(value).__name__, type(exc).__name__)
    text = _ADDRESS.sub("", text)
    if limit and len(text) > limit:
        text = text[:limit] + "..."
    return text


class UserCode(object):
    """Decides which code objects are user code: files under root, or the target file."""

    def __init__(self, root, extra_files=()):
        self.root = os.path.normcase(os.path.realpath(root))
        self.extra = set(os.path.normcase(os.path.realpath(f)) for f in extra_files)
        prefixes = set([sys.prefix, sys.base_prefix, sys.exec_prefix])
        real = [os.path.normcase(os.path.realpath(p)) for p in prefixes if p]
        # An interpreter or venv living inside root is still library code.
        self.excluded = [p for p in real if not _is_within(self.root, p)]
        self.cache = {}

    def __call__(self, code):
        if code.co_name == "<module>":  # import-time execution is not part of the call
            return False
        name = code.co_filename
        hit = self.cache.get(name)
        if hit is None:
            hit = self.cache[name] = self._decide(name)
        return hit

    def _decide(self, filename):
        if not filename or filename.startswith("<"):
            return False
        path = os.path.normcase(os.path.realpath(filename))
        if path in self.extra:
            return True
        if path == os.path.normcase(_HERE) or not _is_within(path, self.root):
            return False
        parts = path[len(self.root) :].split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts:
            return False
        return not any(_is_within(path, p) for p in self.excluded)


def _is_within(path, parent):
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


class Tracer(object):
    """A sys.settrace hook that turns user-code events into CWM frame dicts."""

    def __init__(self, is_user, max_steps=10000, time_limit=10.0, max_repr=1000):
        self.is_user = is_user
        self.max_steps = max_steps
        self.time_limit = time_limit
        self.max_repr = max_repr
        self.frames = []
        self.cut_reason = None
        self._deadline = float("inf")  # set when the call starts
        self._scope = None  # id of the frame whose locals were shown last
        self._shown = {}
        self._raised = set()  # ids of frames whose latest own event was an exception
        self._def_lines = {}

    def start(self):
        self._deadline = time.monotonic() + self.time_limit
        sys.settrace(self._global)

    def stop(self):
        sys.settrace(None)

    def cut(self, reason):
        if self.cut_reason is None:
            self.cut_reason = reason
        sys.settrace(None)
        raise TraceCut(reason)

    def _global(self, frame, event, arg):
        if self.cut_reason is not None or not self.is_user(frame.f_code):
            return None
        self._record(frame, "call", None)
        return self._local

    def _local(self, frame, event, arg):
        if self.cut_reason is not None:
            return None
        key = id(frame)
        if event == "line":
            self._raised.discard(key)
            self._record(frame, "line", None)
        elif event == "return":
            unwinding = key in self._raised and arg is None
            self._raised.discard(key)
            if not unwinding:  # when unwinding, the exception frame already tells how it ended
                self._record(frame, "return", arg)
        elif event == "exception" and not _loop_end(frame, arg[0]):
            self._raised.add(key)
            self._record(frame, "exception", _exception_value(arg))
        return self._local

    def _record(self, frame, event, value):
        if len(self.frames) >= self.max_steps:
            self.cut("max_steps")
        if time.monotonic() > self._deadline:
            self.cut("time_limit")
        code = frame.f_code
        line = self._def_line(code) if event == "call" else frame.f_lineno
        source = linecache.getline(code.co_filename, line).rstrip("\r\n")
        if event == "call" or id(frame) != self._scope:
            # ".." only refers back within one uninterrupted run of the same scope.
            self._scope = id(frame)
            self._shown = {}
        if event in ("call", "line"):
            shown, value = self._locals(frame), None
        else:
            shown, value = {}, clean_repr(value, self.max_repr)
        self.frames.append(
            {"event": event, "line": line, "source": source, "locals": shown, "value": value}
        )

    def _locals(self, frame):
        out = {}
        for name, val in list(frame.f_locals.items()):
            if name.startswith("."):  # implicit comprehension iterator
                continue
            text = clean_repr(val, self.max_repr)
            if self._shown.get(name) == text:
                out[name] = UNCHANGED
            else:
                out[name] = self._shown[name] = text
        return out

    def _def_line(self, code):
        """The `def` line of a function, past any decorators (co_firstlineno points at them)."""
        line = self._def_lines.get(code)
        if line is None:
            line = first = code.co_firstlineno
            name = code.co_filename
            if linecache.getline(name, first).lstrip().startswith("@"):
                for n in range(first + 1, first + 60):
                    text = linecache.getline(name, n).lstrip()
                    if text.startswith(("def ", "async def ", "class ")):
                        line = n
                        break
            self._def_lines[code] = line
        return line


def _loop_end(frame, exc_type):
    """Old interpreters report the StopIteration that ends a `for` loop; users never see it."""
    if exc_type is not StopIteration:
        return False
    try:
        return frame.f_code.co_code[frame.f_lasti] == _FOR_ITER
    except (IndexError, TypeError):
        return False


def _exception_value(arg):
    exc_type, exc = arg[0], arg[1]
    if isinstance(exc, BaseException):
        return exc
    try:
        return exc_type() if exc is None else exc_type(exc)
    except Exception:
        return exc_type


def split_target(target, has_call=False):
    """'path.py::Class::method' -> ('path.py', ['Class', 'method'])."""
    head, sep, rest = target.partition("::")
    if not sep or not head or not rest:
        raise TargetError("target %r is not FILE.py::NAME or MODULE::NAME" % target)
    names = rest.split("::")
    if "[" in names[-1] and has_call:  # a parametrized test id: --call supplies the arguments
        names[-1] = names[-1].split("[", 1)[0]
    if any(not n or "[" in n for n in names):
        raise TargetError("cannot call %r without arguments: give --call EXPR" % target)
    return head, names


def default_call(names):
    if len(names) == 1:
        return names[0] + "()"
    return "%s().%s()" % (".".join(names[:-1]), names[-1])


def load_target(head, root):
    """Import the file or module named by the target; return (module, filename)."""
    if head.endswith(".py") or "/" in head or os.sep in head:
        path = head if os.path.isabs(head) else os.path.join(root, head)
        if not os.path.isfile(path):
            raise TargetError("no such file: %s" % path)
        return _load_file(os.path.realpath(path), root), os.path.realpath(path)
    _prepend_path(root)
    module = importlib.import_module(head)
    return module, getattr(module, "__file__", None)


def _load_file(path, root):
    # Like pytest's "prepend" import mode: climb while directories are packages.
    base, parts = os.path.dirname(path), [os.path.splitext(os.path.basename(path))[0]]
    while os.path.isfile(os.path.join(base, "__init__.py")):
        parts.insert(0, os.path.basename(base))
        base = os.path.dirname(base)
    _prepend_path(root)
    _prepend_path(base)
    name = ".".join(parts)
    if not all(p.isidentifier() for p in parts):
        name = "_cwm_trace_target"
    elif name in sys.modules:  # a stdlib name already in use: keep both importable
        name = "_cwm_trace_target_" + parts[-1]
    elif len(parts) > 1:
        importlib.import_module(".".join(parts[:-1]))
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _check_names(module, names):
    """Fail early, with a clear message, when the target names nothing in the module."""
    obj, where = module, module.__name__
    for name in names[0].split(".") + names[1:]:
        if not hasattr(obj, name):
            raise TargetError("%s has no attribute %r" % (where, name))
        obj, where = getattr(obj, name), name


def _prepend_path(path):
    if path not in sys.path:
        sys.path.insert(0, path)


def run_call(call, namespace, tracer):
    """Evaluate `call` under the tracer; return (returned repr, error text, captured stdout)."""
    returned = error = None
    captured, saved = io.StringIO(), sys.stdout
    alarm = hasattr(signal, "setitimer") and tracer.time_limit > 0
    if alarm:  # stops code stuck in library or C calls, where no user events fire
        old_handler = signal.signal(signal.SIGALRM, lambda *_: tracer.cut("time_limit"))
        signal.setitimer(signal.ITIMER_REAL, tracer.time_limit)
    sys.stdout = captured
    try:
        tracer.start()
        try:
            result = eval(call, namespace)
        finally:
            tracer.stop()
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
        returned = clean_repr(result, RETURNED_LIMIT)
    except TraceCut:
        pass
    except BaseException as exc:
        text = str(exc)
        error = "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__
    finally:
        sys.stdout = saved
        if alarm:
            signal.signal(signal.SIGALRM, old_handler)
    return returned, error, captured.getvalue()[:STDOUT_LIMIT]


def trace_target(target, call=None, root=".", max_steps=10000, time_limit=10.0, max_repr=1000):
    """Load `target`, trace `call` (default: the target called with no arguments)."""
    root = os.path.realpath(root)
    head, names = split_target(target, call is not None)
    call_text = call or default_call(names)
    try:
        code = compile(call_text, "<trace-call>", "eval")
    except SyntaxError as exc:
        message = "--call %r is not a Python expression: %s" % (call_text, exc.msg)
        raise TargetError(message) from None
    try:
        module, filename = load_target(head, root)
    except (TargetError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # SystemExit too: a module that exits on import
        message = "importing %s failed: %s: %s" % (head, type(exc).__name__, exc)
        raise TargetError(message) from exc
    _check_names(module, names)
    is_user = UserCode(root, [filename] if filename else [])
    tracer = Tracer(is_user, max_steps, time_limit, max_repr)
    started = time.monotonic()
    returned, error, stdout = run_call(code, module.__dict__, tracer)
    meta = dict(version=FORMAT_VERSION, target=target, call=call_text, filename=filename)
    meta.update(entry=".".join(names), python=platform.python_version())
    cut = tracer.cut_reason
    meta.update(frames=tracer.frames, cut=cut is not None, reason=cut, error=error)
    meta.update(returned=returned, stdout=stdout, steps=len(tracer.frames))
    meta["elapsed"] = round(time.monotonic() - started, 6)
    return meta


def _parse_args(argv):
    parser = argparse.ArgumentParser(description="Trace one Python call into CWM frames.")
    add = parser.add_argument
    add("--root", default=".", help="user code lives under this directory")
    add("--target", required=True, help="FILE.py::NAME[::NAME] or MODULE::NAME")
    add("--call", default=None, help="expression to evaluate, e.g. \"f('x')\"")
    add("--max-steps", type=int, default=10000, help="cut the trace after this many frames")
    add("--time-limit", type=float, default=10.0, help="cut the trace after this many seconds")
    add("--max-repr", type=int, default=1000, help="cut longer reprs to this many characters")
    add("--out", default=None, help="write the JSON here instead of stdout")
    return parser.parse_args(argv)


def main(argv=None):
    # Running as a script puts this file's directory first on sys.path; user imports
    # must not find the harness's sibling modules there.
    if sys.path and os.path.realpath(sys.path[0] or ".") == os.path.dirname(_HERE):
        del sys.path[0]
    args = _parse_args(argv)
    status = 0
    try:
        doc = trace_target(
            args.target, args.call, args.root, args.max_steps, args.time_limit, args.max_repr
        )
    except TargetError as exc:
        doc, status = {"version": FORMAT_VERSION, "fatal": str(exc), "frames": []}, 2
        sys.stderr.write("tracer: %s\n" % exc)
    if os.getpid() != _STARTED_AS:  # a child the traced code forked, returning: not ours
        os._exit(0)
    text = json.dumps(doc)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    else:
        (sys.__stdout__ or sys.stdout).write(text + "\n")
    return status


def exit_now(status):
    """End at once, once the trace is written: a non-daemon thread the traced code started
    would otherwise hold the interpreter open until the caller's timeout."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
