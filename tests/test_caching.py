"""The cache registry: bounded memos and clear_all."""

from __future__ import annotations

from kvopt import caching


def test_memo_is_bounded_and_registered() -> None:
    memo: caching.Memo[int, str] = caching.Memo("test memo", 2)
    assert "test memo" in caching.registered()
    for k in range(3):
        assert memo.put(k, str(k)) == str(k)
    assert len(memo) == 3 and memo[2] == "2"
    memo.put(3, "3")  # more than 2 entries held: it forgets them, then remembers the new one
    assert len(memo) == 1 and 3 in memo and memo.get(0) is None
    caching.clear_all()
    assert len(memo) == 0


def test_memoized_functions_clear_with_the_rest() -> None:
    calls: list[int] = []

    @caching.memoized("test square")
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(3) == 9 and square(3) == 9 and calls == [3]
    caching.clear_all()
    assert square(3) == 9 and calls == [3, 3]
