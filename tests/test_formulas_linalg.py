"""Linear-algebra formulas: the published counts, each evaluated by hand in the comment beside it.

Sources: LAPACK Working Note 41, "Operation Counts for the LAPACK Routines" (multiplications M and additions
A per routine; complex: 6 M + 2 A real FLOPs) and Golub & Van Loan, Matrix Computations, 4th ed. (symmetric
QR 9n³ / 4n³/3, Francis QR 25n³ / 10n³, Golub-Reinsch SVD 4m²n + 8mn² + 9n³ / 14mn² + 8n³ / 4mn² - 4n³/3;
complex x 4). Matrices: A 5 x 5 (n = 5), B 5 x 3 (3 right-hand sides), R 4 x 3 (m = 4, n = 3).

LAWN 41 at n = 5, used throughout:
  GETRF(5, 5): M = n³/3 + 2n/3 = 125/3 + 10/3 = 45;  A = n³/3 - n²/2 + n/6 = 125/3 - 25/2 + 5/6 = 30  -> 75
  POTRF(5):    M = n³/6 + n²/2 + n/3 = 125/6 + 25/2 + 5/3 = 35;  A = n³/6 - n/6 = 20                  -> 55
A brute-force count of the textbook algorithms (below) checks these and the triangular solves.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_formulas_matmul import cost_of, make_call

import rooflens
from rooflens.formulas import REGISTRY
from rooflens.types import Cost

from _helpers import Fn, tm

torch.manual_seed(0)
A = torch.randn(5, 5)
SPD = A @ A.T + 5 * torch.eye(5)
B = torch.randn(5, 3)
R = torch.randn(4, 3)


def records(fn: Any, *args: torch.Tensor, convention: str = "fma") -> list[tuple[str, int, int]]:
    report = rooflens.analyze(Fn(fn), args, convention=convention)
    assert report.unsupported_ops() == {}, report.unsupported_ops()
    return [(r.op, r.cost.macs, r.cost.flops) for r in report.records]


# ---- which aten operator each torch.linalg function reaches, and its count ----------------------------

@pytest.mark.parametrize(("fn", "args", "expected"), [
    # POTRF(5) = 55
    (torch.linalg.cholesky, (SPD,), [("aten.linalg_cholesky_ex", 0, 55)]),
    (torch.linalg.cholesky_ex, (SPD,), [("aten.linalg_cholesky_ex", 0, 55)]),
    # POTRS(5, 3): M = 3 (25 + 5) = 90, A = 3 (25 - 5) = 60 -> 150
    (torch.cholesky_solve, (B, SPD), [("aten.cholesky_solve", 0, 150)]),
    # POTRI(5): M = n³/3 + n² + 2n/3 = 125/3 + 25 + 10/3 = 70; A = n³/3 - n²/2 + n/6 = 125/3 - 12.5 + 5/6 = 30
    (torch.cholesky_inverse, (SPD,), [("aten.cholesky_inverse", 0, 100)]),
    # GETRF(5, 5) = 75
    (torch.linalg.lu_factor, (A,), [("aten.linalg_lu_factor_ex", 0, 75)]),
    (torch.linalg.lu, (A,), [("aten.linalg_lu", 0, 75)]),
    # GETRS(5, 3): M = 3 * 25 = 75, A = 3 * 20 = 60 -> 135
    (lambda lu, piv, b: torch.linalg.lu_solve(lu, piv, b), (*torch.linalg.lu_factor(A), B),
     [("aten.linalg_lu_solve", 0, 135)]),
    # GETRF + GETRS = 75 + 135 = 210
    (torch.linalg.solve, (A, B), [("aten._linalg_solve_ex", 0, 210)]),
    # one right-hand side: 75 + GETRS(5, 1) (25 + 20 = 45) = 120
    (torch.linalg.solve, (A, B[:, 0].contiguous()), [("aten._linalg_solve_ex", 0, 120)]),
    # TRSM(5, 3): M = 3 * 5*6/2 = 45, A = 3 * 5*4/2 = 30 -> 75 (= n² per right-hand side)
    (lambda a, b: torch.linalg.solve_triangular(a, b, upper=True), (A, B), [("aten.linalg_solve_triangular", 0, 75)]),
    # unit diagonal: 5 fewer divisions per right-hand side: M = 3 * 5*4/2 = 30 -> 60
    (lambda a, b: torch.linalg.solve_triangular(a, b, upper=True, unitriangular=True), (A, B),
     [("aten.linalg_solve_triangular", 0, 60)]),
    # solving from the right, X A = Bᵀ (3 x 5): the 3 rows are the right-hand sides: 75
    (lambda a, b: torch.linalg.solve_triangular(a, b.T, upper=True, left=False), (A, B),
     [("aten.linalg_solve_triangular", 0, 75)]),
    # GETRF + GETRI(5): M = 2n³/3 + n²/2 + 5n/6 = 250/3 + 12.5 + 25/6 = 100; A = 250/3 - 37.5 + 25/6 = 50
    # -> 75 + 150 = 225 (= 2n³ - 3n²/2 + 5n/2 = 250 - 37.5 + 12.5)
    (torch.linalg.inv, (A,), [("aten.linalg_inv_ex", 0, 225)]),
    # GETRF + 5 multiplications (the diagonal's product) = 80; slogdet + 5 logs + 5 adds = 85
    (torch.linalg.det, (A,), [("aten._linalg_det", 0, 80)]),
    (torch.linalg.slogdet, (A,), [("aten._linalg_slogdet", 0, 85)]),
    # QR of R (4 x 3), reduced: GEQRF(4, 3): M = mn² - n³/3 + n²/2 + mn + 23n/6 = 36 - 9 + 4.5 + 12 + 11.5 = 55,
    # A = mn² - n³/3 + n²/2 + 5n/6 = 36 - 9 + 4.5 + 2.5 = 34 -> 89;
    # ORGQR(4, 3, 3): M = k(2mn + 2n - 5/3 + k(2k/3 - (m + n) - 1)) = 3(24 + 6 - 5/3 - 18) = 31,
    # A = k(2mn + n - m + 1/3 + k(2k/3 - (m + n))) = 3(24 + 3 - 4 + 1/3 - 15) = 25 -> 56; total 145
    (torch.linalg.qr, (R,), [("aten.linalg_qr", 0, 145)]),
    # mode "complete": Q 4 x 4, ORGQR(4, 4, 3): M = 3(32 + 8 - 5/3 - 21) = 52, A = 3(32 + 4 - 4 + 1/3 - 18) = 43
    # -> 89 + 95 = 184; mode "r": GEQRF only, 89
    (lambda r: torch.linalg.qr(r, mode="complete"), (R,), [("aten.linalg_qr", 0, 184)]),
    (lambda r: torch.linalg.qr(r, mode="r"), (R,), [("aten.linalg_qr", 0, 89)]),
    # a wide 3 x 4: GEQRF(3, 4) (m <= n): M = nm² - m³/3 - m²/2 + 2mn + 23m/6 = 36 - 9 - 4.5 + 24 + 11.5 = 58,
    # A = nm² - m³/3 - m²/2 + mn + 5m/6 = 36 - 9 - 4.5 + 12 + 2.5 = 37 -> 95;
    # ORGQR(3, 3, 3): M = 3(18 + 6 - 5/3 - 15) = 22, A = 3(18 + 3 - 3 + 1/3 - 12) = 19 -> 41; total 136
    (torch.linalg.qr, (R.T.contiguous(),), [("aten.linalg_qr", 0, 136)]),
    (torch.geqrf, (R,), [("aten.geqrf", 0, 89)]),
    (lambda a, tau: torch.linalg.householder_product(a, tau), torch.geqrf(R), [("aten.linalg_householder_product", 0, 56)]),
    # ORMQR(m=4, n=2, k=3, left): M = 2nmk - nk² + 2nk = 48 - 18 + 12 = 42, A = 48 - 18 + 6 = 36 -> 78
    (lambda a, tau, c: torch.ormqr(a, tau, c), (*torch.geqrf(R), torch.randn(4, 2)), [("aten.ormqr", 0, 78)]),
    # symmetric QR with eigenvectors 9n³ = 1,125 (eigvalsh computes the vectors too under a dispatch mode)
    (torch.linalg.eigh, (SPD,), [("aten._linalg_eigh", 0, 1_125)]),
    (torch.linalg.eigvalsh, (SPD,), [("aten._linalg_eigh", 0, 1_125)]),
    # Francis QR with Schur vectors 25n³ = 3,125
    (torch.linalg.eig, (A,), [("aten.linalg_eig", 0, 3_125)]),
    (torch.linalg.eigvals, (A,), [("aten.linalg_eig", 0, 3_125)]),
    # Golub-Reinsch on 4 x 3: full U, V 4m²n + 8mn² + 9n³ = 192 + 288 + 243 = 723; thin 14mn² + 8n³ = 504 + 216
    # = 720 (svdvals computes the thin vectors too under a dispatch mode)
    (torch.linalg.svd, (R,), [("aten._linalg_svd", 0, 723)]),
    (lambda r: torch.linalg.svd(r, full_matrices=False), (R,), [("aten._linalg_svd", 0, 720)]),
    (torch.linalg.svdvals, (R,), [("aten._linalg_svd", 0, 720)]),
    # a wide 3 x 4 is counted as its transpose: 723
    (torch.linalg.svd, (R.T.contiguous(),), [("aten._linalg_svd", 0, 723)]),
    # least squares R (4 x 3), 2 right-hand sides: GEQRF(4, 3) 89 + GEQRS(4, 3, 2): M = 2 * 3 (8 - 1.5 + 2.5) = 54,
    # A = 2 * 3 (8 - 1.5 + 0.5) = 42 -> 185
    (torch.linalg.lstsq, (R, torch.randn(4, 2)), [("aten.linalg_lstsq", 0, 185)]),
    # wide 2 x 4, 1 right-hand side, as the transpose (4 x 2): GEQRF(4, 2): M = 16 - 8/3 + 2 + 8 + 23/3 = 31,
    # A = 16 - 8/3 + 2 + 5/3 = 17 -> 48; GEQRS(4, 2, 1): M = 2 (8 - 1 + 2.5) = 19, A = 2 (8 - 1 + 0.5) = 15 -> 82
    (torch.linalg.lstsq, (torch.randn(2, 4), torch.randn(2, 1)), [("aten.linalg_lstsq", 0, 82)]),
    # pinv of R (4 x 3): thin SVD 720 + 2 per singular value (compare, reciprocal) 6 + scaling V's 3 x 3 = 9;
    # product V diag(1/s) (3 x 3) @ Uᴴ (3 x 4): 3*4*3 = 36 MACs, 72 FLOPs -> 807
    (torch.linalg.pinv, (R,), [("aten.linalg_pinv", 36, 807)]),
    # hermitian: eigh 1,125 + 2*5 + 5*5 = 1,160; product 5*5*5 = 125 MACs, 250 FLOPs -> 1,410
    (lambda s: torch.linalg.pinv(s, hermitian=True), (SPD,), [("aten.linalg_pinv", 125, 1_410)]),
    # SYTRF(5): M = n³/6 + n²/2 + 10n/3 = 125/6 + 12.5 + 50/3 = 50; A = 20 -> 70
    (torch.linalg.ldl_factor, (SPD,), [("aten.linalg_ldl_factor_ex", 0, 70)]),
    # cross product of 4 3-vectors: 12 outputs x (2 multiplies + 1 subtract) = 36 (pointwise family)
    (torch.linalg.cross, (torch.randn(4, 3), torch.randn(4, 3)), [("aten.linalg_cross", 0, 36)]),
    # unpacking an LU factorisation: data movement
    (torch.lu_unpack, torch.linalg.lu_factor(A), [("aten.lu_unpack", 0, 0)]),
])
def test_torch_linalg_functions(fn: Any, args: tuple[torch.Tensor, ...], expected: list[tuple[str, int, int]]) -> None:
    assert records(fn, *args) == expected


def test_check_errors_is_not_an_operator() -> None:
    # torch.linalg.cholesky checks info with aten._linalg_check_errors: bookkeeping, no formula and no record
    assert "aten._linalg_check_errors" not in REGISTRY
    assert [op for op, _, _ in records(torch.linalg.cholesky, SPD)] == ["aten.linalg_cholesky_ex"]


def test_batches_multiply() -> None:
    # 3 Cholesky factorisations of 5 x 5: 3 * 55 = 165; 2 determinants: 2 * 80 = 160
    assert records(torch.linalg.cholesky, SPD.expand(3, 5, 5).contiguous()) == [("aten.linalg_cholesky_ex", 0, 165)]
    assert records(torch.linalg.det, A.expand(2, 5, 5).contiguous()) == [("aten._linalg_det", 0, 160)]
    # A (5 x 5) against B (2, 5, 3): torch factorises A once (the LU it returns is 5 x 5) and solves the 6
    # right-hand sides: GETRF 75 + GETRS(5, 6) (M 6 * 25 = 150, A 6 * 20 = 120) = 75 + 270 = 345
    assert records(torch.linalg.solve, A, torch.randn(2, 5, 3)) == [("aten._linalg_solve_ex", 0, 345)]
    # a batch of 2 matrices: 2 * 75 + 270 = 420
    assert records(torch.linalg.solve, A.expand(2, 5, 5).contiguous(), torch.randn(2, 5, 3)) == [
        ("aten._linalg_solve_ex", 0, 420)
    ]


def test_complex_counts() -> None:
    hpd = (SPD + 0j).to(torch.complex128)
    # POTRF(5) on complex: 6 M + 2 A = 6 * 35 + 2 * 20 = 250
    assert records(torch.linalg.cholesky, hpd) == [("aten.linalg_cholesky_ex", 0, 250)]
    # GVL totals x 4: eigh 4 * 1,125 = 4,500
    assert records(torch.linalg.eigh, hpd) == [("aten._linalg_eigh", 0, 4_500)]


def test_counts_are_the_same_under_both_conventions_but_pinv_product() -> None:
    assert records(torch.linalg.cholesky, SPD, convention="exact") == [("aten.linalg_cholesky_ex", 0, 55)]
    assert records(torch.linalg.inv, A, convention="exact") == [("aten.linalg_inv_ex", 0, 225)]
    # pinv's product under exact: 12 outputs, each a 3-term dot product: 12 * 5 = 60 -> 735 + 60 = 795
    assert records(torch.linalg.pinv, R, convention="exact") == [("aten.linalg_pinv", 36, 795)]


@pytest.mark.parametrize(("op", "given", "out", "flops"), [
    # eigenvalues only: 4n³/3 = 500/3 = 166.67 -> 167 (symmetric), 10n³ = 1,250 (general)
    ("aten._linalg_eigh", {"A": tm(5, 5), "compute_v": False}, tm(5), 167),
    ("aten._linalg_eigvals", {"self": tm(5, 5)}, tm(5, dtype="complex64", itemsize=8), 1_250),
    ("aten.linalg_eigvals", {"self": tm(5, 5)}, tm(5, dtype="complex64", itemsize=8), 1_250),
    # singular values only, 4 x 3: 4mn² - 4n³/3 = 144 - 36 = 108
    ("aten._linalg_svd", {"A": tm(4, 3), "compute_uv": False}, tm(3), 108),
    # ldl_solve, counted as GETRS(5, 3) = 135
    ("aten.linalg_ldl_solve", {"LD": tm(5, 5), "pivots": tm(5, dtype="int32"), "B": tm(5, 3)}, tm(5, 3), 135),
    # the deprecated triangular_solve(B, A): TRSM(5, 3) = 75
    ("aten.triangular_solve", {"self": tm(5, 3), "A": tm(5, 5)}, tm(5, 3), 75),
])
def test_formulas_by_hand(op: str, given: dict[str, Any], out: Any, flops: int) -> None:
    assert cost_of(make_call(op, given, (out,))) == Cost(0, flops)


def test_matrix_exp_is_not_counted() -> None:
    # its Taylor degree and number of squarings depend on the matrix norm (a value): left unsupported, bytes only
    report = rooflens.analyze(Fn(torch.linalg.matrix_exp), (A,))
    assert list(report.unsupported_ops()) == ["aten.linalg_matrix_exp"]


# ---- the published polynomials against a brute-force count of the algorithms -------------------------

def brute_getrf(m: int, n: int) -> tuple[int, int]:
    """(multiplications, additions) of right-looking LU, m >= n: per column a reciprocal of the pivot, the
    scaling of the m - j entries below, and the rank-1 update of the (m - j) x (n - j) block."""
    muls = adds = 0
    for j in range(1, n + 1):
        muls += 1 + (m - j) + (m - j) * (n - j)
        adds += (m - j) * (n - j)
    return muls, adds


def brute_potrf(n: int) -> tuple[int, int]:
    """Cholesky by columns: l_jj = sqrt(a_jj - sum_k l_jk²), l_ij = (a_ij - sum_k l_ik l_jk) / l_jj."""
    muls = adds = 0
    for j in range(1, n + 1):
        muls += (j - 1) + 1  # squares, sqrt
        adds += j - 1
        muls += (n - j) * ((j - 1) + 1)  # products, division
        adds += (n - j) * (j - 1)
    return muls, adds


def brute_trsm(n: int, nrhs: int, *, unit: bool) -> tuple[int, int]:
    """Back substitution: x_i = (b_i - sum_{k>i} u_ik x_k) / u_ii per right-hand side."""
    muls = adds = 0
    for i in range(n):
        muls += (n - 1 - i) + (0 if unit else 1)
        adds += n - 1 - i
    return muls * nrhs, adds * nrhs


@pytest.mark.parametrize(("m", "n"), [(1, 1), (5, 5), (6, 4), (9, 2), (7, 7)])
def test_lu_polynomial_counts_the_algorithm(m: int, n: int) -> None:
    muls, adds = brute_getrf(m, n)
    call = make_call("aten.linalg_lu_factor_ex", {"A": tm(m, n)}, (tm(m, n),))
    assert cost_of(call).flops == muls + adds


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_cholesky_polynomial_counts_the_algorithm(n: int) -> None:
    muls, adds = brute_potrf(n)
    assert cost_of(make_call("aten.linalg_cholesky_ex", {"self": tm(n, n)}, (tm(n, n),))).flops == muls + adds
    # complex: 6 per multiplication, 2 per addition
    c = tm(n, n, dtype="complex64", itemsize=8)
    assert cost_of(make_call("aten.linalg_cholesky_ex", {"self": c}, (c,))).flops == 6 * muls + 2 * adds


@pytest.mark.parametrize(("n", "nrhs", "unit"), [(5, 3, False), (5, 3, True), (1, 1, False), (8, 2, True)])
def test_triangular_solve_polynomial_counts_the_algorithm(n: int, nrhs: int, unit: bool) -> None:
    muls, adds = brute_trsm(n, nrhs, unit=unit)
    call = make_call("aten.linalg_solve_triangular", {"self": tm(n, n), "B": tm(n, nrhs), "upper": True,
                                                      "unitriangular": unit}, (tm(n, nrhs),))
    assert cost_of(call).flops == muls + adds
    # GETRS = a unit-lower and an upper triangular solve
    lower, upper = brute_trsm(n, nrhs, unit=True), brute_trsm(n, nrhs, unit=False)
    getrs = make_call("aten.linalg_lu_solve", {"LU": tm(n, n), "pivots": tm(n, dtype="int32"), "B": tm(n, nrhs)},
                      (tm(n, nrhs),))
    assert cost_of(getrs).flops == sum(lower) + sum(upper)


def test_every_linalg_entry_is_exercised_here() -> None:
    linalg = {e.op for e in REGISTRY if e.family == "linalg"}
    assert linalg == {
        "aten.linalg_cholesky_ex", "aten.cholesky_solve", "aten.cholesky_inverse", "aten.linalg_lu_factor_ex",
        "aten.linalg_lu", "aten.linalg_lu_solve", "aten.linalg_ldl_solve", "aten._linalg_solve_ex",
        "aten.linalg_solve_triangular", "aten.triangular_solve", "aten.linalg_inv_ex", "aten._linalg_det",
        "aten._linalg_slogdet", "aten.linalg_qr", "aten.geqrf", "aten.linalg_householder_product", "aten.ormqr",
        "aten.linalg_ldl_factor_ex", "aten._linalg_eigh", "aten.linalg_eig", "aten._linalg_eigvals",
        "aten.linalg_eigvals", "aten._linalg_svd", "aten.linalg_lstsq", "aten.linalg_pinv",
    }
