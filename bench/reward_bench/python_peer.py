#!/usr/bin/env python3
"""Python peer for bench/reward_bench: the same math items through a SymPy-based verifier.

Math-Verify and similar Python verifiers cannot be installed on the offline build machine, so
this stands in for them with what they do per check: find the last \\boxed{}, normalize the
LaTeX to a SymPy expression (fractions, roots, pi, powers, products, percent, units removed),
and decide equivalence with sympy.simplify(gold - pred) == 0 (falling back to string equality
when either side does not parse). Prints checks/s on one core and p50/p99 latency.

Usage: python3 bench/reward_bench/python_peer.py [--seconds S]
"""
import re
import sys
import time

import sympy
from sympy.parsing.sympy_parser import (implicit_multiplication_application, parse_expr,
                                        standard_transformations)

PAIRS = [
    ("42", "42", "41"), ("1000000", "1,000,000", "100000"), ("\\frac{1}{2}", "0.5", "\\frac{1}{3}"),
    ("\\frac{3}{4}", "\\dfrac{3}{4}", "\\frac{4}{3}"), ("2\\sqrt{3}", "\\sqrt{12}", "\\sqrt{13}"),
    ("\\frac{\\pi}{2}", "\\pi/2", "\\pi"), ("-7", "-7", "7"), ("3.14", "3.140", "3.41"),
    ("\\{1, 2, 3\\}", "\\{3, 2, 1\\}", "\\{1, 2\\}"), ("(1, 3]", "1 < x \\le 3", "[1, 3]"),
    ("x^2+2x+1", "(x+1)^2", "(x-1)^2"), ("50\\%", "0.5", "5"), ("2^{10}", "1024", "1000"),
    ("\\frac{5}{2}", "2\\frac{1}{2}", "2\\frac{1}{3}"), ("12", "\\$12", "\\$13"),
    ("90", "90^\\circ", "45^\\circ"),
]
REASONING = ("We need to find the value. First, consider the given conditions and simplify the "
             "expression step by step. Substituting the known quantities, we get an equation that "
             "can be solved directly. Checking the arithmetic carefully: the terms combine, the "
             "common factors cancel, and the remaining quantity is what we were asked for. Let me "
             "verify once more by plugging the result back into the original statement; it holds. ")
TRANSFORMS = standard_transformations + (implicit_multiplication_application,)


def last_boxed(s):
    i = s.rfind("\\boxed")
    if i < 0:
        return None
    j = s.find("{", i)
    depth = 0
    for k in range(j, len(s)):
        if s[k] == "{":
            depth += 1
        elif s[k] == "}":
            depth -= 1
            if depth == 0:
                return s[j + 1:k]
    return None


def to_sympy(s):
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\$", "")
    s = s.replace("^\\circ", "").replace("\\%", "").replace("\\left", "").replace("\\right", "")
    s = s.replace(",", "") if re.fullmatch(r"[\d,]+", s) else s
    for _ in range(8):
        s = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
        s = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s)
    s = s.replace("\\pi", "pi").replace("^", "**").replace("\\cdot", "*").replace("{", "(").replace("}", ")")
    return parse_expr(s, transformations=TRANSFORMS, evaluate=True)


def equivalent(gold, pred):
    try:
        return sympy.simplify(to_sympy(gold) - to_sympy(pred)) == 0
    except Exception:  # noqa: BLE001 - a verifier falls back to strings on anything
        return gold.replace(" ", "") == pred.replace(" ", "")


def main():
    seconds = 3.0
    if "--seconds" in sys.argv:
        seconds = float(sys.argv[sys.argv.index("--seconds") + 1])
    items = []
    for i in range(512):
        gold, right, wrong = PAIRS[i % len(PAIRS)]
        pred = right if (i // 16) % 2 == 0 else wrong
        items.append((gold, "<think>\n" + REASONING + "\n</think>\n<answer>\nThe answer is $\\boxed{" +
                      pred + "}$.\n</answer>"))
    lat = []
    start = time.perf_counter()
    i = 0
    while True:
        gold, completion = items[i % len(items)]
        t0 = time.perf_counter()
        pred = last_boxed(completion)
        equivalent(gold, pred if pred is not None else "")
        t1 = time.perf_counter()
        lat.append((t1 - t0) * 1e6)
        i += 1
        if t1 - start >= seconds and i >= 100:
            break
    total = time.perf_counter() - start
    lat.sort()
    print(f"python sympy verifier, 1 process   {len(lat) / total:10.0f} checks/s   "
          f"p50 {lat[len(lat) // 2]:8.1f} us   p99 {lat[min(len(lat) - 1, len(lat) * 99 // 100)]:8.1f} us"
          f"   ({len(lat)} calls; sympy {sympy.__version__})")


if __name__ == "__main__":
    main()
