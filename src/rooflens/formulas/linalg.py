"""Dense linear algebra (``torch.linalg``): factorisations, solves, inverses, determinants,
eigendecompositions, singular values, least squares, pseudo-inverse. Published counts: LAPACK Working
Note 41's operation counts of the LAPACK routines (https://www.netlib.org/lapack/lawn41/node116.html:
multiplications + additions; complex: a multiplication 6 real FLOPs, an addition 2) and, for the
iterative eigenvalue and SVD algorithms, Golub & Van Loan, *Matrix Computations*, 4th ed. (complex x 4).
FLOPs, the same under both conventions, and no MACs (but for pinv's final matrix product); batch
dimensions multiply.

Sources, the standard published counts:

* **LAWN 41** -- LAPACK Working Note 41, *Installation Guide for LAPACK*, appendix "Operation Counts
  for the LAPACK Routines" (https://www.netlib.org/lapack/lawn41/node116.html): separate counts of
  multiplications and additions, exact polynomials with their lower-order terms, for the routines
  torch calls on the CPU: GETRF (LU), GETRS, GETRI, POTRF (Cholesky), POTRS, POTRI, TRSM, GEQRF (QR),
  ORGQR, ORMQR, SYTRF (LDLᵀ). (The same polynomials are in LAPACK's timing code, ``dopla.f``, and in
  LAPACK++/MAGMA/PLASMA's ``flops.h``, which also give GEQRS, the least-squares solve after GEQRF.) A
  division or square root counts as a multiplication. For complex data LAWN 41 counts a multiplication
  as 6 real FLOPs and an addition as 2.
* **GVL** -- G. H. Golub and C. F. Van Loan, *Matrix Computations*, 4th ed., for the iterative
  eigenvalue and singular value algorithms, which have no exact count: symmetric QR algorithm
  (Algorithm 8.3.3) 4n³/3 eigenvalues only, 9n³ with eigenvectors; Francis QR (Algorithm 7.5.2)
  10n³ eigenvalues only, 25n³ with the Schur vectors; Golub-Reinsch SVD (Figure 8.6.1) 4mn² - 4n³/3
  singular values only, 14mn² + 8n³ with the thin U and V, 4m²n + 8mn² + 9n³ with the full U and V
  (m >= n; a wide matrix as its transpose). These are totals of both kinds; for complex data they are
  counted x 4 (LAWN 41's 6 per multiplication and 2 per addition, for the equal numbers of both these
  algorithms do).

Counts are FLOPs only, no MACs (a factorisation is not one of the dot products that the MAC figure of
convolutions and matrix products stands for), and the same under both FLOP conventions (they count
every multiplication and addition already). The one exception is ``linalg_pinv``'s final product
``V diag(1/s) Uᴴ``, a matrix product counted as the matmul family counts one, as if torch had decomposed it.

What each ``torch.linalg`` function reaches on the CPU (torch 2.x), and how it is counted (batch
dimensions multiply every count; ``n x n`` matrices unless stated; ``r`` right-hand sides = the solution's
elements / n, batches included):

* ``cholesky``/``cholesky_ex`` -> ``linalg_cholesky_ex``: POTRF, ≈ n³/3.
* ``cholesky_solve`` -> ``cholesky_solve``: POTRS, 2n²·r; ``cholesky_inverse``: POTRI, ≈ 2n³/3.
* ``lu_factor``/``lu_factor_ex`` -> ``linalg_lu_factor_ex``, ``lu`` -> ``linalg_lu``: GETRF of m x n,
  ≈ mn² - n³/3 (2n³/3 square); ``lu_solve`` -> ``linalg_lu_solve``: GETRS, 2n²·r - n·r.
* ``solve``/``solve_ex``/``tensorsolve`` -> ``_linalg_solve_ex``: GETRF + GETRS.
* ``solve_triangular`` -> ``linalg_solve_triangular``, ``triangular_solve`` -> ``triangular_solve``:
  TRSM, n²·r (n·r fewer with a unit diagonal).
* ``inv``/``inv_ex`` -> ``linalg_inv_ex``: GETRF + GETRI, ≈ 2n³ (the published count of an inverse;
  torch's CPU kernel solves against the identity instead, ≈ 8n³/3).
* ``det`` -> ``_linalg_det``: GETRF + n (the product of U's diagonal, counted as a reduction of n);
  ``slogdet``/``logdet`` -> ``_linalg_slogdet``: GETRF + 2n (log |u_ii| and their sum).
* ``qr`` -> ``linalg_qr``: GEQRF of m x n (≈ 2mn² - 2n³/3) + ORGQR forming Q (mode "reduced": m x k,
  "complete": m x m, k = min(m, n); mode "r": no Q); ``geqrf``: GEQRF; ``householder_product``: ORGQR;
  ``ormqr``: ORMQR.
* ``eigh``/``eigvalsh`` -> ``_linalg_eigh``: 9n³ (``compute_v``) or 4n³/3.
* ``eig``/``eigvals`` -> ``linalg_eig``: 25n³ (under a dispatch mode torch computes the eigenvectors even
  for ``eigvals``); ``_linalg_eigvals``/``linalg_eigvals``, when they reach dispatch: 10n³. The
  eigenvectors' back-substitution from the Schur form is not counted.
* ``svd``/``svdvals`` (and ``matrix_rank``, ``cond``, ``matrix_norm(ord=2)``, which torch builds on it)
  -> ``_linalg_svd``: by ``compute_uv`` and ``full_matrices`` as above.
* ``lstsq`` -> ``linalg_lstsq``: counted as Householder QR least squares whatever the driver (the CPU's
  default ``gelsy`` pivots columns, ``gelsd``/``gelss`` go through an SVD): GEQRF(m, n) + GEQRS(m, n, r);
  a wide (m < n, minimum-norm) problem as the LQ factorisation, i.e. the same counts for the transpose.
* ``pinv`` -> ``linalg_pinv``: the thin SVD (``hermitian``: ``eigh`` with vectors), per singular value a
  compare with the tolerance and a reciprocal (2), the scaling of V's k columns (n·k) and the product
  (n x k) @ (k x m).
* ``ldl_factor``/``ldl_factor_ex`` -> ``linalg_ldl_factor_ex``: SYTRF, ≈ n³/3; ``ldl_solve`` ->
  ``linalg_ldl_solve``: two unit-triangular solves and the block-diagonal one, counted as GETRS.
* ``multi_dot``, ``matrix_power``, ``vecdot``, ``matrix_norm``, ``vector_norm``, ``tensorinv``: decomposed
  by torch into products, reductions and the operators above. ``cross`` (``linalg_cross``) is elementwise
  (pointwise family); ``lu_unpack`` is data movement (memory family). ``matrix_exp`` is not counted: its
  cost (Taylor degree and number of squarings) depends on the matrix norm, a value.
* ``_linalg_check_errors`` is bookkeeping, not an operator with a cost.

Bytes: the default rule (inputs read once, every output -- factors, pivots, info -- written once).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import prod

from rooflens.formulas.registry import OpCall, dot_cost, formula, is_complex
from rooflens.types import Cost, TensorMeta

F = Fraction


@dataclass(frozen=True)
class Ops:
    """Multiplications and additions of one call of a LAPACK routine (LAWN 41's two columns)."""

    muls: Fraction
    adds: Fraction

    def __add__(self, other: Ops) -> Ops:
        return Ops(self.muls + other.muls, self.adds + other.adds)

    def times(self, k: int) -> Ops:
        return Ops(self.muls * k, self.adds * k)

    def flops(self, *, complex_dtype: bool) -> int:
        """Real FLOPs: muls + adds, or 6 x muls + 2 x adds for complex data (LAWN 41)."""
        total = 6 * self.muls + 2 * self.adds if complex_dtype else self.muls + self.adds
        return round(total)


# ---- LAWN 41 (multiplications, additions) ------------------------------------------------------------


def getrf(m: int, n: int) -> Ops:
    """LU with partial pivoting of an m x n matrix (k = min(m, n) columns eliminated)."""
    if m < n:
        return Ops(F(1, 2) * m * m * n - F(1, 6) * m**3 + F(1, 2) * m * n - F(1, 2) * m * m + F(2, 3) * m,
                   F(1, 2) * m * m * n - F(1, 6) * m**3 - F(1, 2) * m * n + F(1, 6) * m)
    return Ops(F(1, 2) * m * n * n - F(1, 6) * n**3 + F(1, 2) * m * n - F(1, 2) * n * n + F(2, 3) * n,
               F(1, 2) * m * n * n - F(1, 6) * n**3 - F(1, 2) * m * n + F(1, 6) * n)


def getri(n: int) -> Ops:
    """Inverse from the LU factors."""
    return Ops(F(2, 3) * n**3 + F(1, 2) * n * n + F(5, 6) * n, F(2, 3) * n**3 - F(3, 2) * n * n + F(5, 6) * n)


def getrs(n: int, nrhs: int) -> Ops:
    """Solve with the LU factors: a unit-lower and an upper triangular solve per right-hand side."""
    return Ops(F(nrhs * n * n), F(nrhs * (n * n - n)))


def potrf(n: int) -> Ops:
    """Cholesky factorisation."""
    return Ops(F(1, 6) * n**3 + F(1, 2) * n * n + F(1, 3) * n, F(1, 6) * n**3 - F(1, 6) * n)


def potri(n: int) -> Ops:
    """Inverse from the Cholesky factor."""
    return Ops(F(1, 3) * n**3 + n * n + F(2, 3) * n, F(1, 3) * n**3 - F(1, 2) * n * n + F(1, 6) * n)


def potrs(n: int, nrhs: int) -> Ops:
    """Solve with the Cholesky factor: two triangular solves per right-hand side."""
    return Ops(F(nrhs * (n * n + n)), F(nrhs * (n * n - n)))


def trsm(n: int, nrhs: int, *, unit: bool = False) -> Ops:
    """Triangular solve (n x n) for nrhs right-hand sides; n fewer divisions each with a unit diagonal."""
    return Ops(F(nrhs * n * (n - 1 if unit else n + 1), 2), F(nrhs * n * (n - 1), 2))


def geqrf(m: int, n: int) -> Ops:
    """Householder QR of an m x n matrix."""
    if m > n:
        return Ops(m * n * n - F(1, 3) * n**3 + F(1, 2) * n * n + m * n + F(23, 6) * n,
                   m * n * n - F(1, 3) * n**3 + F(1, 2) * n * n + F(5, 6) * n)
    return Ops(n * m * m - F(1, 3) * m**3 - F(1, 2) * m * m + 2 * m * n + F(23, 6) * m,
               n * m * m - F(1, 3) * m**3 - F(1, 2) * m * m + m * n + F(5, 6) * m)


def orgqr(m: int, n: int, k: int) -> Ops:
    """Form the m x n matrix Q from k Householder reflectors."""
    return Ops(k * (2 * m * n + 2 * n - F(5, 3) + k * (F(2, 3) * k - (m + n) - 1)),
               k * (2 * m * n + n - m + F(1, 3) + k * (F(2, 3) * k - (m + n))))


def ormqr(m: int, n: int, k: int, *, left: bool) -> Ops:
    """Apply k Householder reflectors to an m x n matrix, from the left or the right."""
    if left:
        return Ops(F(2 * n * m * k - n * k * k + 2 * n * k), F(2 * n * m * k - n * k * k + n * k))
    return Ops(2 * n * m * k - m * k * k + m * k + n * k - F(1, 2) * k * k + F(1, 2) * k,
               F(2 * n * m * k - m * k * k + m * k))


def geqrs(m: int, n: int, nrhs: int) -> Ops:
    """Least-squares solve after GEQRF: apply Qᵀ to the right-hand sides, then a triangular solve."""
    return Ops(nrhs * n * (2 * m - F(1, 2) * n + F(5, 2)), nrhs * n * (2 * m - F(1, 2) * n + F(1, 2)))


def sytrf(n: int) -> Ops:
    """Bunch-Kaufman LDLᵀ factorisation of a symmetric matrix."""
    return Ops(F(1, 6) * n**3 + F(1, 2) * n * n + F(10, 3) * n, F(1, 6) * n**3 - F(1, 6) * n)


# ---- GVL (totals) ------------------------------------------------------------------------------------

COMPLEX_FACTOR = 4  # GVL's real totals for complex data: (6 + 2) / 2 (as many multiplications as additions)


def symmetric_eig(n: int, *, vectors: bool) -> Fraction:
    """Symmetric QR algorithm: 9n³ with the eigenvectors, 4n³/3 eigenvalues only (GVL Alg. 8.3.3)."""
    return F(9 * n**3) if vectors else F(4, 3) * n**3


def general_eig(n: int, *, vectors: bool) -> Fraction:
    """Francis QR: 25n³ with the Schur vectors, 10n³ eigenvalues only (GVL Alg. 7.5.2)."""
    return F(25 * n**3) if vectors else F(10 * n**3)


def svd_flops(m: int, n: int, *, compute_uv: bool, full_matrices: bool) -> Fraction:
    """Golub-Reinsch SVD of an m x n matrix (GVL Fig. 8.6.1), a wide one as its transpose."""
    m, n = max(m, n), min(m, n)
    if not compute_uv:
        return 4 * m * n * n - F(4, 3) * n**3
    if full_matrices:
        return F(4 * m * m * n + 8 * m * n * n + 9 * n**3)
    return F(14 * m * n * n + 8 * n**3)


# ---- the formulas ------------------------------------------------------------------------------------


def _batch(a: TensorMeta) -> int:
    """Matrices in a batch: the product of the dimensions before the last two."""
    return prod(a.shape[:-2])


def _rhs(solution: TensorMeta, n: int) -> int:
    """Right-hand sides of a solve with an n x n matrix, batches included: the solution's elements / n."""
    return solution.numel // n if n else 0


def _lapack(ops: Ops, a: TensorMeta) -> Cost:
    return Cost(flops=ops.flops(complex_dtype=is_complex(a)))


def _gvl(flops: Fraction, a: TensorMeta) -> Cost:
    return Cost(flops=round(flops * (COMPLEX_FACTOR if is_complex(a) else 1)))


@formula("aten.linalg_cholesky_ex")
def cholesky(call: OpCall) -> Cost:
    """POTRF (LAWN 41): n³/6 + n²/2 + n/3 multiplications, n³/6 - n/6 additions (≈ n³/3)"""
    a = call.first_tensor("self")
    return _lapack(potrf(a.shape[-1]).times(_batch(a)), a)


@formula("aten.cholesky_solve")
def cholesky_solve(call: OpCall) -> Cost:
    """POTRS (LAWN 41): r(n² + n) multiplications, r(n² - n) additions for r right-hand sides"""
    a = call.first_tensor("input2")
    return _lapack(potrs(a.shape[-1], _rhs(call.out, a.shape[-1])), a)


@formula("aten.cholesky_inverse")
def cholesky_inverse(call: OpCall) -> Cost:
    """POTRI (LAWN 41): n³/3 + n² + 2n/3 multiplications, n³/3 - n²/2 + n/6 additions (≈ 2n³/3)"""
    a = call.first_tensor("self")
    return _lapack(potri(a.shape[-1]).times(_batch(a)), a)


@formula("aten.linalg_lu_factor_ex", "aten.linalg_lu")
def lu(call: OpCall) -> Cost:
    """GETRF (LAWN 41) of m x n: ≈ mn² - n³/3 (m >= n), 2n³/3 - n²/2 + 5n/6 for a square matrix"""
    a = call.first_tensor("A")
    return _lapack(getrf(a.shape[-2], a.shape[-1]).times(_batch(a)), a)


@formula("aten.linalg_lu_solve", "aten.linalg_ldl_solve")
def lu_solve(call: OpCall) -> Cost:
    """GETRS (LAWN 41): r·n² multiplications, r(n² - n) additions for r right-hand sides"""
    a = call.first_tensor("LU", "LD")
    return _lapack(getrs(a.shape[-1], _rhs(call.out, a.shape[-1])), a)


@formula("aten._linalg_solve_ex")
def solve(call: OpCall) -> Cost:
    """GETRF + GETRS (LAWN 41): ≈ 2n³/3 per matrix + 2n² per right-hand side"""
    a = call.first_tensor("A")
    n = a.shape[-1]
    factors = call.outputs[1] if len(call.outputs) > 1 else a  # the LU: A broadcast to the batch solved
    return _lapack(getrf(n, n).times(_batch(factors)) + getrs(n, _rhs(call.out, n)), a)


@formula("aten.linalg_solve_triangular", "aten.triangular_solve")
def solve_triangular(call: OpCall) -> Cost:
    """TRSM (LAWN 41): n² per right-hand side (n(n+1)/2 multiplications, n(n-1)/2 additions); n fewer unit"""
    a = call.first_tensor("A") if call.op == "aten.triangular_solve" else call.first_tensor("self")
    n = a.shape[-1]
    return _lapack(trsm(n, _rhs(call.out, n), unit=bool(call.args.get("unitriangular"))), a)


@formula("aten.linalg_inv_ex")
def inv(call: OpCall) -> Cost:
    """GETRF + GETRI (LAWN 41): 2n³ - 3n²/2 + 5n/2"""
    a = call.first_tensor("A")
    n = a.shape[-1]
    return _lapack((getrf(n, n) + getri(n)).times(_batch(a)), a)


@formula("aten._linalg_det")
def det(call: OpCall) -> Cost:
    """GETRF (LAWN 41) + n multiplications (the product of U's diagonal)"""
    a = call.first_tensor("A")
    n = a.shape[-1]
    return _lapack((getrf(n, n) + Ops(F(n), F(0))).times(_batch(a)), a)


@formula("aten._linalg_slogdet")
def slogdet(call: OpCall) -> Cost:
    """GETRF (LAWN 41) + 2n (log |u_ii|, counted as a multiplication, and their sum)"""
    a = call.first_tensor("A")
    n = a.shape[-1]
    return _lapack((getrf(n, n) + Ops(F(n), F(n))).times(_batch(a)), a)


@formula("aten.linalg_qr")
def qr(call: OpCall) -> Cost:
    """GEQRF (LAWN 41, ≈ 2mn² - 2n³/3) + ORGQR for Q: m x k ("reduced"), m x m ("complete"), none ("r")"""
    a = call.first_tensor("A")
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    mode = str(call.args.get("mode") or "reduced")
    ops = geqrf(m, n)
    if mode == "complete":
        ops += orgqr(m, m, k)
    elif mode != "r":
        ops += orgqr(m, k, k)
    return _lapack(ops.times(_batch(a)), a)


@formula("aten.geqrf")
def geqrf_formula(call: OpCall) -> Cost:
    """GEQRF (LAWN 41): ≈ 2mn² - 2n³/3 (m >= n)"""
    a = call.first_tensor("self")
    return _lapack(geqrf(a.shape[-2], a.shape[-1]).times(_batch(a)), a)


@formula("aten.linalg_householder_product")
def householder_product(call: OpCall) -> Cost:
    """ORGQR (LAWN 41): Q (m x n) from k reflectors, ≈ 4mnk - 2(m + n)k² + 4k³/3"""
    a, tau = call.first_tensor("input"), call.first_tensor("tau")
    return _lapack(orgqr(a.shape[-2], a.shape[-1], tau.shape[-1]).times(_batch(a)), a)


@formula("aten.ormqr")
def ormqr_formula(call: OpCall) -> Cost:
    """ORMQR (LAWN 41): k reflectors applied to C (m x n), ≈ 4mnk - 2nk² from the left"""
    tau, c = call.first_tensor("input2"), call.first_tensor("input3")
    left = bool(call.args.get("left", True))
    return _lapack(ormqr(c.shape[-2], c.shape[-1], tau.shape[-1], left=left).times(_batch(c)), c)


@formula("aten.linalg_ldl_factor_ex")
def ldl_factor(call: OpCall) -> Cost:
    """SYTRF (LAWN 41): n³/6 + n²/2 + 10n/3 multiplications, n³/6 - n/6 additions (≈ n³/3)"""
    a = call.first_tensor("self")
    return _lapack(sytrf(a.shape[-1]).times(_batch(a)), a)


@formula("aten._linalg_eigh")
def eigh(call: OpCall) -> Cost:
    """Symmetric QR (GVL): 9n³ with eigenvectors (compute_v), 4n³/3 eigenvalues only"""
    a = call.first_tensor("A")
    vectors = bool(call.args.get("compute_v", True))
    return _gvl(symmetric_eig(a.shape[-1], vectors=vectors) * _batch(a), a)


@formula("aten.linalg_eig")
def eig(call: OpCall) -> Cost:
    """Francis QR (GVL): 25n³ (eigenvalues and vectors)"""
    a = call.first_tensor("self")
    return _gvl(general_eig(a.shape[-1], vectors=True) * _batch(a), a)


@formula("aten._linalg_eigvals", "aten.linalg_eigvals")
def eigvals(call: OpCall) -> Cost:
    """Francis QR (GVL): 10n³ (eigenvalues only)"""
    a = call.first_tensor("self")
    return _gvl(general_eig(a.shape[-1], vectors=False) * _batch(a), a)


@formula("aten._linalg_svd")
def svd(call: OpCall) -> Cost:
    """Golub-Reinsch (GVL), m >= n: 4mn² - 4n³/3 (values), 14mn² + 8n³ (thin U, V), 4m²n + 8mn² + 9n³ (full)"""
    a = call.first_tensor("A")
    flops = svd_flops(a.shape[-2], a.shape[-1], compute_uv=bool(call.args.get("compute_uv", True)),
                      full_matrices=bool(call.args.get("full_matrices", False)))
    return _gvl(flops * _batch(a), a)


@formula("aten.linalg_lstsq")
def lstsq(call: OpCall) -> Cost:
    """Householder QR least squares (LAWN 41): GEQRF(m, n) + GEQRS(m, n, r); m < n as the transpose"""
    a, b = call.first_tensor("self"), call.first_tensor("b")
    m, n = a.shape[-2], a.shape[-1]
    tall, wide = max(m, n), min(m, n)
    rhs = b.numel // m if m else 0
    return _lapack(geqrf(tall, wide).times(_batch(a)) + geqrs(tall, wide, rhs), a)


@formula("aten.linalg_pinv")
def pinv(call: OpCall) -> Cost:
    """thin SVD (GVL; hermitian: eigh 9n³) + 2 per singular value + n·k scaling; MACs = n·m·k (the product)"""
    a = call.first_tensor("self")
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    batch = _batch(a)
    if call.args.get("hermitian"):
        decomposition = symmetric_eig(n, vectors=True)
    else:
        decomposition = svd_flops(m, n, compute_uv=True, full_matrices=False)
    scale = _gvl(decomposition * batch, a) + Cost(flops=batch * (2 * k + n * k))
    # V diag(1/s) (n x k) @ U^H (k x m): n x m outputs, each a k-term dot product
    product = dot_cost(batch * n * m * k, batch * n * m, 0, call.convention, complex_dtype=is_complex(a))
    return scale + product
