"""The Streamlit page (`ragtune ui`) against the issue's targets, default models on this machine's CPU.

    .venv/bin/python bench/ui.py [--quick] [--questions N] [--repeats N] [--screenshots DIR]

1. First text of an answer within 2 s: `ragtune ui` on the sample corpus, driven by headless Chromium.
   In-page timestamps (keydown and MutationObserver, so selenium's polling adds nothing) give Enter to the
   new assistant message's first text, and to its verdict caption (complete), in the default answer mode
   (auto: grounded for the 135M model, one piece) and in "free" (streamed), picked in the sidebar.
   Beside them, the same questions in-process: the model's own share of the wait.
2. Page interactions under 300 ms server time: the app in-process under Streamlit's AppTest, `at.run()`
   timed (script run plus AppTest's small overhead: an upper bound), judged on the p95.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/ui.py`: make `bench` and `tests` importable
    sys.path.insert(0, str(ROOT))

from bench.helpers import cpu_model, load_average, log, markdown_table, median, out, percentile, rotate  # noqa: E402
from ragtune.cli.index_commands import DEMO_QUESTIONS  # noqa: E402
from tests.browser import browser_missing, by_css, chromium, screenshot, ui_server, wait_for  # noqa: E402

QUESTIONS = (
    *DEMO_QUESTIONS,
    "How many bits does QLoRA store the frozen base weights in?",
    "Which faiss index compares the query against every stored vector?",
    "Who introduced LoRA, and in which year?",
)
WARM_UP = "What is retrieval-augmented generation?"
MODES = ("auto", "free")  # the default answer mode, and the one that streams the model's tokens
FIRST_TEXT_S, SERVER_MS = 2.0, 300.0  # the targets
HISTORY = 3  # answers on the Ask page while interactions are timed: every rerun draws them again
MESSAGES = "[data-testid='stChatMessage']"

# Installed before each question: performance.now() at the Enter keydown, when the new assistant message
# first holds text (not a "Loading…" spinner), and when its verdict caption appears. arguments[0]: the
# message count before.
WATCH_JS = """
const base = arguments[0];
window.__bench = {enter: null, first: null, done: null, caption: ''};
window.__benchCheck = () => {
  const b = window.__bench, messages = document.querySelectorAll("[data-testid='stChatMessage']");
  if (b.enter === null || messages.length < base + 2) return;
  const last = messages[messages.length - 1];
  if (!last.querySelector("[data-testid='stChatMessageAvatarAssistant']")) return;
  const text = [...last.querySelectorAll("[data-testid='stMarkdownContainer']")]
    .filter(e => !e.closest("[data-testid='stSpinner']")).map(e => e.innerText).join('');
  if (b.first === null && text.trim()) b.first = performance.now();
  const caption = last.querySelector("[data-testid='stCaptionContainer']");
  if (b.done === null && caption) { b.done = performance.now(); b.caption = caption.innerText; }
};
if (!window.__benchObserver) {
  document.addEventListener('keydown', e => {
    if (e.key === 'Enter' && window.__bench.enter === null) window.__bench.enter = performance.now();
  }, true);
  window.__benchObserver = new MutationObserver(() => window.__benchCheck());
  window.__benchObserver.observe(document.body, {subtree: true, childList: true, characterData: true});
}
"""


@dataclass(frozen=True)
class Timing:
    first_s: float  # Enter to the answer's first text on the page
    complete_s: float  # Enter to the verdict caption: the answer is complete
    caption: str  # "verified against [1] (grounded) · 0.84 s": the resolved mode and the server's seconds

    @property
    def server_s(self) -> float:
        found = re.search(r"· ([\d.]+) s$", self.caption.strip())
        return float(found.group(1)) if found else float("nan")


def wait_idle(driver: Any) -> None:
    """Until the script run ends (the sources expander comes after the caption): each step starts afresh."""
    state = "return document.querySelector('.stApp').getAttribute('data-test-script-state')"
    wait_for(lambda: driver.execute_script(state) == "notRunning", timeout=600, poll=0.02)


def ask(driver: Any, question: str, timeout: float) -> Timing:
    from selenium.webdriver.common.keys import Keys

    base = len(by_css(driver, MESSAGES))
    box = wait_for(lambda: by_css(driver, "textarea[data-testid='stChatInputTextArea']"))[0]
    box.send_keys(question)  # typed before the clock starts: only Enter counts
    driver.execute_script(WATCH_JS, base)
    box.send_keys(Keys.ENTER)
    done = lambda: (m := driver.execute_script("return window.__bench"))["done"] is not None and m  # noqa: E731
    marks = wait_for(done, timeout=timeout, poll=0.02)
    wait_idle(driver)
    first = marks["first"] or marks["done"]  # None only when no text ever showed before the caption
    return Timing((first - marks["enter"]) / 1000, (marks["done"] - marks["enter"]) / 1000, marks["caption"])


def click(driver: Any, selector: str, text: str) -> None:
    wait_for(lambda: [e for e in by_css(driver, selector) if e.text.strip() == text])[0].click()


def pick_answer_mode(driver: Any, mode: str) -> None:
    """As a user does: open the sidebar's "Answer mode" box and click the option."""
    box = wait_for(lambda: by_css(driver, "[data-testid='stSidebar'] input[aria-label='Answer mode']"))[0]
    box.click()
    click(driver, "[role='option']", mode)
    wait_for(lambda: box.get_attribute("value") == mode)
    time.sleep(0.5)  # the rerun the choice triggers may not have started yet
    wait_idle(driver)


def new_chat(driver: Any) -> None:
    click(driver, "[data-testid='stSidebar'] button", "New chat")
    wait_for(lambda: not by_css(driver, MESSAGES))
    wait_idle(driver)


def browser_part(index: Path, questions: list[str], shots: Path | None) -> dict[str, list[Timing]]:
    """Per answer mode: a warm-up answer (loads what the mode needs), a new chat, the timed questions."""
    results: dict[str, list[Timing]] = {}
    with ui_server("--index", str(index)) as url:
        driver = chromium()
        try:
            driver.get(url)
            for mode in MODES:
                if mode != "auto":
                    pick_answer_mode(driver, mode)
                warm = ask(driver, WARM_UP, timeout=900)
                log(f"{mode}: warm-up answered in {warm.complete_s:.1f} s ({warm.caption})")
                new_chat(driver)  # earlier answers would lengthen the timed questions' prompts
                results[mode] = []
                for question in questions:
                    results[mode].append(timing := ask(driver, question, timeout=600))
                    log(f"{mode}: first text {timing.first_s:.2f} s, complete {timing.complete_s:.2f} s")
                    if shots is not None and len(results[mode]) == 1:
                        screenshot(driver, shots, f"ui-answer-{mode}")
        finally:
            driver.quit()
    return results


def in_process(index: Path, questions: list[str]) -> dict[str, list[float]]:
    """Seconds to the first piece of `conversation.ask(stream=True)`, no server, browser or history: the
    model's own share of the wait on the page (the stream is closed after that piece)."""
    from ragtune import RAG
    from ragtune.rag.generation.answer import AnswerConfig
    from ragtune.rag.generation.llm import GeneratorConfig, LocalLLM

    llm = LocalLLM.load(GeneratorConfig())
    firsts: dict[str, list[float]] = {}
    with RAG.open(index) as rag:
        for mode in MODES:
            firsts[mode] = []
            for question in [WARM_UP, *questions]:
                started = time.perf_counter()
                conversation = rag.conversation(llm=llm, answer=AnswerConfig(answer_mode=mode))
                with conversation.ask(question, stream=True) as stream:
                    next(iter(stream), None)
                firsts[mode].append(time.perf_counter() - started)
            del firsts[mode][0]  # the warm-up
    return firsts


def _app(settings_json: str) -> None:  # AppTest runs this function's source as the page script
    from ragtune.ui.app import main
    from ragtune.ui.settings import UISettings

    main(UISettings.from_json(settings_json))


def server_part(index: Path, questions: list[str], repeats: int) -> dict[str, list[float]]:
    """Milliseconds of `at.run()` per interaction, with the models loaded and HISTORY answers shown."""
    from streamlit.testing.v1 import AppTest

    from ragtune.ui.settings import UISettings

    at = AppTest.from_function(_app, args=(UISettings(index=str(index)).to_json(),), default_timeout=900)
    at.run()
    for question in [WARM_UP, *questions][:HISTORY]:  # loads the index and models, as the first user does
        at.chat_input[0].set_value(question)
        at.run()
    if len(at.chat_message) != 2 * HISTORY:
        raise SystemExit(f"the chat holds {len(at.chat_message)} messages, not {2 * HISTORY}: {at.error}")
    page = lambda name: lambda _n: at.sidebar.radio(key="page").set_value(name)  # noqa: E731
    retriever = lambda n: at.sidebar.selectbox(key="mode").set_value(("bm25", "hybrid")[n % 2])  # noqa: E731
    interactions: dict[str, Callable[[int], Any]] = {
        f"switch retriever (Ask, {HISTORY} answers)": retriever,
        "open Status": page("Status"),
        "open Documents": page("Documents"),
        f"rerun Ask ({HISTORY} answers)": lambda _n: None,
    }
    times: dict[str, list[float]] = {name: [] for name in interactions}
    for n in range(repeats + 1):  # round 0 warms each interaction up and is not kept
        for name in rotate(list(interactions), n):
            interactions[name](n)
            started = time.perf_counter()
            at.run()
            elapsed_ms = (time.perf_counter() - started) * 1000
            if at.exception or at.error:
                raise SystemExit(f"{name}: the page showed {[e.value for e in [*at.exception, *at.error]]}")
            times[name] += [elapsed_ms] if n else []
            if at.sidebar.radio(key="page").value != "Ask":  # back, untimed: each interaction starts there
                page("Ask")(n)
                at.run()
    return times


def verdict(ok: bool, why: str) -> str:
    return "meets" if ok else f"MISSED ({why})"


def report(
    browser: dict[str, list[Timing]], direct: dict[str, list[float]], server: dict[str, list[float]]
) -> None:
    import torch

    out("# `ragtune ui` benchmark\n")
    machine = f"{cpu_model()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable)"
    out(
        f"Machine: {machine}, torch threads {torch.get_num_threads()}, load average {load_average()} at the end."
    )
    out("Sample corpus; default embedding model and generator (SmolLM2-135M-Instruct), warmed up first.\n")
    out("## 1. Answers in headless Chromium: seconds from Enter to the page\n")
    rows, targets = [], []
    for mode, timings in browser.items():
        firsts, completes = [t.first_s for t in timings], [t.complete_s for t in timings]
        shown = sorted({m for t in timings for m in re.findall(r"\((\w+)\)", t.caption)})  # auto, resolved
        rows.append(
            [f"{mode} ({', '.join(shown)})", len(timings), median(firsts), max(firsts), median(completes)]
            + [max(completes), median([t.server_s for t in timings]), median(direct[mode]), max(direct[mode])]
        )
        worst, model = max(firsts), median(direct[mode])
        measured = f"p50 {median(firsts):.2f} s, max {worst:.2f} s"
        why = f"max {worst:.2f} s; in-process the first piece alone takes p50 {model:.2f} s"
        targets.append(
            [f"first text <= {FIRST_TEXT_S:g} s, {mode}", measured, verdict(worst <= FIRST_TEXT_S, why)]
        )
    header = ["answer mode", "questions", "first text p50", "first text max", "complete p50", "complete max"]
    header += ["server Answer.seconds p50", "in-process first piece p50", "in-process max"]
    markdown_table(header, rows, cell=lambda v: f"{v:.2f}" if isinstance(v, float) else str(v))
    out("\nIn-process: `conversation.ask(q, stream=True)` to its first piece; no server, browser, history.\n")
    out("## 2. Page interactions: server time in ms (AppTest `at.run()`, after a warm-up)\n")
    rows = []
    for name, times in server.items():
        p95 = percentile(times, 95)
        rows.append([name, len(times), f"{median(times):.0f}", f"{p95:.0f}", f"{max(times):.0f}"])
        rows[-1].append(verdict(p95 < SERVER_MS, f"p95 {p95:.0f} ms"))
    markdown_table(["interaction", "runs", "p50", "p95", "max", f"p95 < {SERVER_MS:g} ms"], rows)
    slowest = max(server, key=lambda name: percentile(server[name], 95))
    p95 = percentile(server[slowest], 95)
    measured = f"slowest p95 {p95:.0f} ms ({slowest})"
    targets.append(
        [f"interactions < {SERVER_MS:g} ms server time", measured, verdict(p95 < SERVER_MS, measured)]
    )
    out("\n## Targets\n")
    markdown_table(["target", "measured", "verdict"], targets, left=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 questions per mode, 5 runs per interaction")
    parser.add_argument(
        "--questions", type=int, help=f"per answer mode (default 5, at most {len(QUESTIONS)})"
    )
    parser.add_argument("--repeats", type=int, help="timed runs per page interaction (default 20)")
    parser.add_argument("--screenshots", type=Path, help="save the page after each mode's first answer here")
    args = parser.parse_args(argv)
    questions = list(QUESTIONS[: args.questions or (2 if args.quick else 5)])
    repeats = args.repeats or (5 if args.quick else 20)
    if repeats < 1 or (args.questions is not None and not 1 <= args.questions <= len(QUESTIONS)):
        parser.error(f"--questions between 1 and {len(QUESTIONS)}, --repeats at least 1")
    if missing := browser_missing():
        raise SystemExit(f"the browser part cannot run: {missing}")
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ragtune-ui-bench-") as tmp:
        from ragtune import RAG
        from ragtune.rag.sample import sample_corpus

        index = Path(tmp) / "index"
        log("indexing the sample corpus with the default embedding model")
        with RAG.open(index) as rag:
            log(rag.ingest(sample_corpus(), progress=False).summary())
        browser = browser_part(index, questions, args.screenshots)  # its server is stopped before the rest
        log("the model's own first piece, in this process")
        direct = in_process(index, questions)
        log("server time of page interactions (AppTest, in this process)")
        server = server_part(index, questions, repeats)
    report(browser, direct, server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
