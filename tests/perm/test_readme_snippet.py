"""README.md's PERM snippet runs as written (issue 25.5: it was a SyntaxError), against a
loopback judge: only the judge URL is replaced by the loopback server's. About 2 s (mostly the
first import of the HTTP stack)."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def perm_snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## PERM\n"):]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_perm_snippet_runs_against_a_loopback_judge(judge_server, monkeypatch):
    code = perm_snippet()
    assert code.count("http://127.0.0.1:8000/v1") == 1
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a local server takes no key
    namespace: dict = {}
    exec(compile(code.replace("http://127.0.0.1:8000/v1", judge_server.base_url), "README.md", "exec"), namespace)
    # the loopback judge answers 4 of 5 and 70 of 100: mean 0.8 plus 0.2 * (0.7 - 1)
    assert namespace["rewards"] == [__import__("pytest").approx(0.8 + 0.2 * (0.7 - 1.0), abs=1e-6)]
    assert judge_server.total_requests() == 4
