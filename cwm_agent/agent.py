"""The agent loop: ask the model, run its one tool call, feed the result back, until it ends."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cwm_agent import conversation, prompt_sets, prompts, protocol, tools
from cwm_agent.costs import Meter, Prices
from cwm_agent.errors import ContextLengthError, CwmError, Interrupted, PatchError
from cwm_agent.protocol import CHARS_PER_TOKEN
from cwm_agent.redaction import redact, redact_tree, secret_values
from cwm_agent.settings import AgentConfig
from cwm_agent.trajectory import Trajectory
from cwm_agent.types import Action, Model, ModelReply, Observation, Runtime, Usage


@dataclass(frozen=True)
class RunResult:
    status: str
    exit_code: int
    reason: str
    patch: str | None
    steps: int
    usage: Usage
    working_tree_diff: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _EpisodeEnd(Exception):
    """Raised inside the loop to stop it; caught in one place (Agent.run). ``steps``: the
    steps done, when the end came before the current one began (a budget)."""

    def __init__(self, status: str, reason: str, steps: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.steps = steps


ProgressFn = Callable[[str, dict[str, Any]], None]


class ToolHook(Protocol):
    """Wraps the execution of a bash/edit/create action (e.g. trace consultation).

    ``execute`` runs the action for real. The hook returns the observation the model will
    see and, optionally, a JSON-able record stored with the step in the trajectory. Model
    requests it makes count in ``meter`` (the run's tokens, cost and budgets: check
    ``meter.exhausted()`` before spending).
    """

    def around(
        self,
        action: Action,
        runtime: Runtime,
        execute: Callable[[], Observation],
        meter: Meter,
    ) -> tuple[Observation, dict[str, Any] | None]: ...


class Agent:
    def __init__(
        self,
        model: Model,
        runtime: Runtime,
        config: AgentConfig,
        trajectory: Trajectory,
        progress: ProgressFn | None = None,
        hooks: Sequence[ToolHook] = (),
        meter: Meter | None = None,
    ) -> None:
        self.model = model
        self.runtime = runtime
        self.config = config
        self.traj = trajectory
        self.progress = progress or (lambda event, data: None)
        self.hooks = tuple(hooks)
        self._hook_records: dict[str, Any] = {}
        self._own_usage = Usage()  # the agent's own requests; ``usage`` adds the hooks'
        # What the run spends, against its budgets (and those of a batch or scaled run
        # it counts into); without a meter, the config's budgets and no price.
        self.meter = meter or Meter(Prices(), config.budget)
        # What the hooks' own requests spend (trace consultation): counted into the run's
        # meter, and into the run's tokens beside the agent's own requests.
        self.hook_meter = Meter(self.meter.prices, parent=self.meter)
        self.patch: str | None = None
        self.submitted_paths: list[str] = []
        self._format_errors_in_row = 0
        self._context_tokens = 0
        self._secrets = secret_values()
        # The prompt set's templates write the system, user, format-error and submission
        # texts (a subclass's task text too: render_prompt); a wrong name fails here.
        self.prompt_set = prompt_sets.load(config.prompts)
        self.prompt_set.check_tool_format(config.tool_format)
        # One tool result holds about max_output_tokens tokens (CWM's per-message limit).
        self.output_limit = config.max_output_chars

    @property
    def usage(self) -> Usage:
        """The run's tokens: its own requests and its hooks' (trace consultation)."""
        return self._own_usage + self.hook_meter.usage

    def render_prompt(self, name: str, **values: Any) -> str:
        """Template ``name`` of this run's prompt set (``prompts.render``)."""
        return prompts.render(name, self.prompt_set, **values)

    # -- set-up -------------------------------------------------------------------------
    def _initial_messages(self, issue: str) -> list[dict[str, Any]]:
        cfg = self.config
        system = self.render_prompt(
            "system",
            tool_format=cfg.tool_format,
            root=self.runtime.root,
            timeout=int(cfg.timeout),
            max_context=cfg.max_context,
            max_turns=cfg.max_steps,
            runtime_description=self.runtime.description,
        )
        issue_text = protocol.truncate_middle(
            protocol.clean_text(issue), cfg.issue_max_tokens * CHARS_PER_TOKEN
        )
        user = self.render_prompt("user", issue=issue_text, root=self.runtime.root)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    # -- the loop -----------------------------------------------------------------------
    def run(self, issue: str) -> RunResult:
        steps = 0
        try:  # from the first line: an interrupt at any point leaves a finished trajectory
            self.traj.data["config"]["prompt_set"] = self.prompt_set.record()
            messages = self.traj.messages
            messages.extend(self._initial_messages(issue))
            self._context_tokens = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN
            self.traj.save()
            for steps in range(1, self.config.max_steps + 1):
                self._within_budget(steps - 1)
                self._step(steps)
            raise _EpisodeEnd("limit", f"reached the step limit ({self.config.max_steps})")
        except _EpisodeEnd as end:
            return self._finish(end.status, end.reason, steps if end.steps is None else end.steps)
        except KeyboardInterrupt:
            self._abort("interrupted", Interrupted.exit_code, "interrupted (Ctrl-C or SIGTERM)")
            raise Interrupted(
                "interrupted", hint=f"the trajectory so far is in {self.traj.path}"
            ) from None
        except CwmError as exc:
            self._abort(type(exc).__name__, exc.exit_code, str(exc))
            saved = f"the trajectory so far is in {self.traj.path}"
            exc.hint = f"{exc.hint}\n  {saved}" if exc.hint else saved
            raise
        except Exception as exc:  # a bug: the record still ends, then the traceback
            self._abort("crashed", 1, f"{type(exc).__name__}: {exc}")
            raise

    def _within_budget(self, done: int) -> None:
        """Before each request: a spent budget ends the run as a step limit does."""
        limit = self.meter.exhausted()
        if limit is not None:
            raise _EpisodeEnd(limit.status, limit.reason, steps=done)

    def _step(self, step: int) -> None:
        cfg = self.config
        self.progress("step", {"step": step, "max_steps": cfg.max_steps})
        reply = self._ask_model()
        # The action runs as the model wrote it; what is stored, shown and sent back (its
        # reply in the next request included) has no secret in it.
        shown = conversation.redacted_reply(reply, self._secrets)
        self.progress("reply", {"step": step, "reply": shown, "cost_usd": self.meter.cost_usd})
        action, error, extra_results = conversation.interpret(
            reply, self.config.tool_format, submitted=self.patch is not None
        )
        error = None if error is None else redact(error, self._secrets)
        extra_results = [(i, redact(text, self._secrets)) for i, text in extra_results]
        self.traj.messages.append(conversation.assistant_message(shown))
        observation: Observation | None = None
        stored: Action | None = None
        tool_seconds = 0.0
        if error is not None:
            self._handle_format_error(error, reply)
        elif action is None:  # a reply without a tool call after a valid submit: the summary
            self._record(shown, None, None, None, 0.0)
            raise _EpisodeEnd("submitted", "the model finished after a valid submission")
        else:
            self._format_errors_in_row = 0
            stored = conversation.redacted_action(action, self._secrets)
            self.progress("action", {"step": step, "action": stored})
            started = time.perf_counter()
            observation = self._execute(action)
            # Output of non-UTF-8 files or commands must not break the request or the record,
            # and a key a command dug up must not reach either.
            output = redact(protocol.clean_text(observation.output), self._secrets)
            observation = replace(observation, output=output)
            tool_seconds = time.perf_counter() - started
            self._send_observation(action, observation, step, extra_results)
            self.progress("observation", {"step": step, "observation": observation})
        self._record(shown, stored, observation, error, tool_seconds)
        if error is not None and self._format_errors_in_row >= cfg.max_format_errors:
            raise _EpisodeEnd(  # after _record: the last reply is in the trajectory too
                "format_errors",
                f"{self._format_errors_in_row} format errors in a row; last: {error}",
            )
        if self._context_tokens >= cfg.max_context:
            raise _EpisodeEnd("context_exceeded", "the conversation filled the context window")

    def _ask_model(self) -> ModelReply:
        cfg = self.config
        room = cfg.max_context - self._context_tokens
        max_tokens = max(1, min(cfg.max_reply_tokens, room))
        tool_specs = protocol.OPENAI_TOOLS if cfg.tool_format == "openai" else None
        try:
            reply = self.model.complete(self.traj.messages, tool_specs, max_tokens=max_tokens)
        except ContextLengthError as exc:
            raise _EpisodeEnd("context_exceeded", exc.message) from exc
        reply = conversation.clean_reply(reply)
        self._own_usage = self._own_usage + reply.usage
        self.meter.add(reply.usage)
        if reply.usage.total_tokens:
            self._context_tokens = reply.usage.total_tokens
        else:
            self._context_tokens += len(reply.content) // CHARS_PER_TOKEN
        return reply

    def _handle_format_error(self, problem: str, reply: ModelReply) -> None:
        self._format_errors_in_row += 1
        text = self.render_prompt(
            "format_error",
            problem=problem,
            with_example=problem.startswith("your reply"),
            tool_format=self.config.tool_format,
            submitted=self.patch is not None,
        )
        # Native tool calls that were not executed still need an answer, or the API rejects
        # the next request.
        for call in reply.tool_calls:
            self._append({"role": "tool", "tool_call_id": call.id, "content": text})
        if not reply.tool_calls:
            self._append({"role": "user", "content": text})
        self.progress("format_error", {"problem": problem})

    def _execute(self, action: Action) -> Observation:
        if action.tool != "submit":
            return self._execute_with_hooks(action)
        path = action.args.get("path") or None
        if path:
            self.submitted_paths.append(path)
        observation, patch = tools.submit_patch(
            self.runtime,
            path,
            self.runtime.base_dir,
            self.runtime.base,
            exclude=tuple(self.submitted_paths),
            max_output=self.output_limit,
            prompt_set=self.prompt_set,
            max_bytes=self.config.max_patch_bytes,
            warn=self._warn,
        )
        if patch is not None:
            self.patch = patch
            self.traj.data["submissions"].append({"path": path, "patch": patch})
        return observation

    def _execute_with_hooks(self, action: Action) -> Observation:
        def run_tool() -> Observation:
            return tools.execute(
                action,
                self.runtime,
                timeout=self.config.timeout,
                max_output=self.output_limit,
                tool_format=self.config.tool_format,
            )

        execute = run_tool
        for hook in self.hooks:
            execute = self._wrap(hook, action, execute)
        return execute()

    def _wrap(
        self, hook: ToolHook, action: Action, inner: Callable[[], Observation]
    ) -> Callable[[], Observation]:
        def wrapped() -> Observation:
            observation, record = hook.around(action, self.runtime, inner, self.hook_meter)
            if record is not None:
                self._hook_records[type(hook).__name__] = record
            return observation

        return wrapped

    def _send_observation(
        self,
        action: Action,
        observation: Observation,
        step: int,
        extra_results: list[tuple[str, str]],
    ) -> None:
        # As CWM counts it: the context left once this result itself is in it.
        turns = self.config.max_steps - step
        own = len(protocol.render_tool_result(observation.output, turns, 0)) // CHARS_PER_TOKEN
        own = min(own, self.config.max_output_tokens)
        remaining_tokens = max(0, self.config.max_context - self._context_tokens - own)
        content = protocol.render_tool_result(observation.output, turns, remaining_tokens)
        self._append(conversation.tool_message(action, content, step))
        for call_id, error in extra_results:
            self._append({"role": "tool", "tool_call_id": call_id, "content": error})

    def _append(self, message: dict[str, Any]) -> None:
        self.traj.messages.append(message)
        self._context_tokens += len(message["content"]) // CHARS_PER_TOKEN

    def _record(
        self,
        reply: ModelReply,
        action: Action | None,
        observation: Observation | None,
        error: str | None,
        tool_seconds: float,
    ) -> None:
        hook_records, self._hook_records = self._hook_records, {}
        self.traj.add_step(
            hooks=hook_records,
            reply_content=reply.content,
            action=action,
            observation=observation,
            format_error=error,
            model_seconds=reply.latency,
            tool_seconds=tool_seconds,
            usage=reply.usage,
            finish_reason=reply.finish_reason,
            redact=lambda step: redact_tree(step, self._secrets),  # the one place, hooks too
        )
        self.traj.set_usage(self.usage, self.meter.cost_usd)
        self.traj.save()

    # -- the end ------------------------------------------------------------------------
    def _finish(self, status: str, reason: str, steps: int) -> RunResult:
        diff = None
        patch = self.patch
        if patch is None:
            diff = self._working_tree_diff()
            if diff and self.config.submit_on_limit:
                patch = self._validated_or_none(diff)
                if patch is not None:
                    reason += "; emitted the working-tree diff (--submit-on-limit)"
            diff = self._keep_diff(diff)
        if patch is not None:
            status = "submitted" if status == "submitted" else f"submitted_{status}"
            exit_code = 0
        else:
            status = status if status != "submitted" else "no_patch"
            exit_code = 1
        self.traj.finish(status=status, exit_code=exit_code, reason=reason, patch=patch)
        self.traj.save()
        return RunResult(status, exit_code, reason, patch, steps, self.usage, diff)

    def _abort(self, status: str, exit_code: int, reason: str) -> None:
        """Record an abnormal end: what the agent changed is kept in the trajectory."""
        self._keep_diff(self._working_tree_diff())
        self.traj.finish(status=status, exit_code=exit_code, reason=reason, patch=self.patch)
        self.traj.save()

    def _keep_diff(self, diff: str) -> str | None:
        """The working-tree diff into the trajectory (beside it when over the patch limit)."""
        notice = self.traj.keep_working_tree_diff(diff, self.config.max_patch_bytes)
        if notice:
            self._warn(notice)
        return self.traj.data["working_tree_diff"]

    def _warn(self, message: str) -> None:
        self.progress("warning", {"message": message})

    def _working_tree_diff(self) -> str:
        try:
            return self.runtime.diff(exclude=tuple(self.submitted_paths))
        except Exception as exc:  # the record is best-effort; the run's outcome stands
            self.progress("warning", {"message": f"could not compute the working-tree diff: {exc}"})
            return ""

    def _validated_or_none(self, diff: str) -> str | None:
        from cwm_agent.patches import validate_patch

        try:
            return validate_patch(
                diff,
                self.runtime.base_dir,
                self.runtime.base,
                max_bytes=self.config.max_patch_bytes,
            )
        except PatchError as exc:
            self.progress("warning", {"message": f"working-tree diff is not a valid patch: {exc}"})
            return None
