import copy
import io
import math
import pickle
from contextlib import ExitStack, contextmanager
from unittest import mock

import pytest
import scipy.optimize
import torch
from torch import nn

from bin_perception.optim import BPGrad, BPGradSearch, estimate_lipschitz, sample_bound


def _params(*values):
    return [nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in values]


def _step(optimizer, params, grads, loss):
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.as_tensor(g, dtype=p.dtype).clone()
    optimizer.step(loss=torch.tensor(loss, dtype=torch.float64))


def _values(params):
    return [p.detach().tolist() for p in params]


def test_alg2_update_matches_a_hand_computation():
    (x,) = params = _params([1.0, 2.0])
    optimizer = BPGrad(params, lipschitz=4.0, rho=0.1, momentum=0.9)
    # f = 2: eta = (2 - 0.1 * 2) / 4 = 0.45; v = -0.45 * (3, 4) / 5; x = (1, 2) + v.
    _step(optimizer, params, [[3.0, 4.0]], 2.0)
    assert x.tolist() == pytest.approx([1 - 0.27, 2 - 0.36], abs=1e-12)
    # f = 1 is the new min: eta = 0.9 / 4 = 0.225; v = 0.9 (-0.27, -0.36) - 0.225 (0, 1).
    _step(optimizer, params, [[0.0, 5.0]], 1.0)
    assert x.tolist() == pytest.approx([0.73 - 0.243, 1.64 - 0.549], abs=1e-12)
    # f = 3 > min f = 1: eta = (3 - 0.1) / 4 = 0.725; v = 0.9 (-0.243, -0.549) - 0.725 (-1, 0).
    _step(optimizer, params, [[-2.0, 0.0]], 3.0)
    assert x.tolist() == pytest.approx([0.487 - 0.2187 + 0.725, 1.091 - 0.4941], abs=1e-12)
    assert optimizer.upper_bound.item() == 1.0
    assert optimizer.lower_bound.item() == pytest.approx(0.1)


def test_the_norm_is_one_norm_over_all_groups():
    a, b = params = _params([0.0], [0.0, 0.0])
    optimizer = BPGrad([{"params": [a]}, {"params": [b], "lipschitz": 2.0}], lipschitz=1.0, rho=0.0, momentum=0.0)
    # ||(3, 0, 4)|| = 5 across the two groups; eta = 10 / L, per group.
    _step(optimizer, params, [[3.0], [0.0, 4.0]], 10.0)
    assert a.tolist() == pytest.approx([-10 * 3 / 5])
    assert b.tolist() == pytest.approx([0.0, -5 * 4 / 5])


def _zero_gradient_step(optimizer, params):
    before = torch.cat([p.detach().reshape(-1) for p in params])
    _step(optimizer, params, [torch.zeros_like(p) for p in params], 4.0)
    return torch.cat([p.detach().reshape(-1) for p in params]) - before


def test_a_zero_gradient_steps_eta_along_a_random_unit_vector():
    torch.manual_seed(3)
    params = _params([0.0] * 5, [[0.0] * 3] * 2)
    optimizer = BPGrad(params, lipschitz=2.0, rho=0.5, momentum=0.0)
    steps = [_zero_gradient_step(optimizer, params) for _ in range(8)]
    for step in steps:
        assert torch.linalg.vector_norm(step).item() == pytest.approx((4.0 - 0.5 * 4.0) / 2.0)
    # Eight draws over 22 signed axes: all alike would be a fixed direction, not a random one.
    assert len({tuple(step.tolist()) for step in steps}) > 1


def test_the_zero_gradient_direction_follows_torch_seed_and_momentum():
    def first_step(seed, momentum):
        torch.manual_seed(seed)
        params = _params([0.0] * 50)
        return _zero_gradient_step(BPGrad(params, lipschitz=2.0, rho=0.5, momentum=momentum), params)

    assert torch.equal(first_step(1, 0.9), first_step(1, 0.9))
    assert any(not torch.equal(first_step(1, 0.9), first_step(seed, 0.9)) for seed in range(2, 6))
    assert torch.linalg.vector_norm(first_step(1, 0.9)).item() == pytest.approx(1.0)


def test_closure_and_loss_paths_agree():
    torch.manual_seed(0)
    data, target = torch.randn(32, 4), torch.randn(32, 1)
    models = [nn.Linear(4, 1) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    optimizers = [BPGrad(m.parameters(), lipschitz=3.0, weight_decay=1e-2) for m in models]
    for _ in range(5):
        def closure():
            optimizers[0].zero_grad()
            loss = nn.functional.mse_loss(models[0](data), target)
            loss.backward()
            return loss

        returned = optimizers[0].step(closure)
        optimizers[1].zero_grad()
        loss = nn.functional.mse_loss(models[1](data), target)
        loss.backward()
        optimizers[1].step(loss=loss)
        assert returned.item() == loss.item()
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_step_needs_exactly_one_source_of_f():
    params = _params([1.0])
    params[0].grad = torch.ones(1, dtype=torch.float64)
    optimizer = BPGrad(params, lipschitz=1.0)
    with pytest.raises(ValueError, match="f\\(x_t\\)"):
        optimizer.step()
    with pytest.raises(ValueError, match="f\\(x_t\\)"):
        optimizer.step(lambda: torch.tensor(1.0), loss=torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="before its first step"):
        _ = optimizer.upper_bound


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"lipschitz": 0.0}, "Lipschitz"), ({"lipschitz": 1.0, "rho": 1.0}, "rho"),
     ({"lipschitz": 1.0, "momentum": -0.1}, "momentum"), ({"lipschitz": 1.0, "weight_decay": -1.0}, "weight_decay")],
)
def test_invalid_hyperparameters_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BPGrad(_params([1.0]), **kwargs)


def test_shared_options_cannot_vary_per_group():
    a, b = _params([1.0], [2.0])
    with pytest.raises(ValueError, match="rho is shared"):
        BPGrad([{"params": [a]}, {"params": [b], "rho": 0.5}], lipschitz=1.0)


def _run(optimizer, params, schedule):
    for grads, loss in schedule:
        _step(optimizer, params, grads, loss)


SCHEDULE = [  # (gradients of the two parameters, loss)
    ([[3.0, 4.0], [1.0]], 3.0),
    ([[1.0, -2.0], [2.0]], 1.0),
    ([[0.5, 0.5], [-1.0]], 2.0),
    ([[2.0, 1.0], [1.0]], 2.5),
]


def test_bounds_and_velocity_survive_a_state_dict_round_trip():
    reference = _params([1.0, 2.0], [3.0])
    _run(BPGrad(reference, lipschitz=5.0, weight_decay=0.1), reference, SCHEDULE)

    resumed = _params([1.0, 2.0], [3.0])
    first = BPGrad(resumed, lipschitz=5.0, weight_decay=0.1)
    _run(first, resumed, SCHEDULE[:2])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = BPGrad(resumed, lipschitz=5.0, weight_decay=0.1)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    assert second.upper_bound.item() == 1.0
    assert second.lower_bound.item() == pytest.approx(0.1)
    _run(second, resumed, SCHEDULE[2:])
    for p, q in zip(reference, resumed, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-15)


def test_an_optimizer_survives_deepcopy_and_pickle():
    params = _params([1.0, 2.0], [3.0])
    optimizer = BPGrad(params, lipschitz=5.0)
    _run(optimizer, params, SCHEDULE[:1])
    for clone in (copy.deepcopy(optimizer), pickle.loads(pickle.dumps(optimizer))):
        clone_params = [p for g in clone.param_groups for p in g["params"]]
        _run(clone, clone_params, SCHEDULE[1:])
        assert clone.upper_bound.item() == 1.0


def test_eta_outside_momentum_rescales_the_whole_velocity():
    (x,) = params = _params([0.0, 0.0])
    optimizer = BPGrad(params, lipschitz=2.0, rho=0.0, momentum=0.5, eta_outside_momentum=True)
    _step(optimizer, params, [[3.0, 4.0]], 4.0)  # v = -(0.6, 0.8); eta = 2; x = 2 v
    assert x.tolist() == pytest.approx([-1.2, -1.6], abs=1e-12)
    _step(optimizer, params, [[0.0, 2.0]], 1.0)  # v = 0.5 v - (0, 1); eta = 0.5; x += 0.5 v
    assert x.tolist() == pytest.approx([-1.2 - 0.15, -1.6 - 0.7], abs=1e-12)
    thesis = _params([0.0, 0.0])
    _run(BPGrad(thesis, lipschitz=2.0, rho=0.0, momentum=0.5), thesis, [([[3.0, 4.0]], 4.0), ([[0.0, 2.0]], 1.0)])
    # The thesis's form keeps the first step's eta in the velocity: x = 2 (-0.6, -0.8) + 0.5 (-1.2, -1.6) - 0.5 (0, 1).
    assert thesis[0].tolist() == pytest.approx([-1.8, -2.9], abs=1e-12)


def test_epoch_mean_loss_uses_the_running_mean_and_restarts_each_epoch():
    (x,) = params = _params([0.0])
    optimizer = BPGrad(params, lipschitz=1.0, rho=0.0, momentum=0.0, epoch_mean_loss=True)
    optimizer.start_epoch()
    moves = []
    for loss in (4.0, 2.0, 6.0):  # f(x_t) = 4, 3, 4: the running means
        before = x.item()
        _step(optimizer, params, [[-1.0]], loss)
        moves.append(x.item() - before)
    assert moves == pytest.approx([4.0, 3.0, 4.0])
    assert optimizer.upper_bound.item() == 3.0
    optimizer.start_epoch()
    before = x.item()
    _step(optimizer, params, [[-1.0]], 1.0)  # a new epoch: f = 1, not (4 + 2 + 6 + 1) / 4
    assert x.item() - before == pytest.approx(1.0)
    assert optimizer.upper_bound.item() == 1.0


def test_norm_before_decay_normalises_by_the_loss_gradient_alone():
    (x,) = params = _params([3.0, 4.0])
    optimizer = BPGrad(params, lipschitz=1.0, rho=0.0, momentum=0.0, weight_decay=0.5, norm_before_decay=True)
    # d = (g + 0.5 x) / ||g|| = ((0, 1) + (1.5, 2)) / 1; eta = 1.
    _step(optimizer, params, [[0.0, 1.0]], 1.0)
    assert x.tolist() == pytest.approx([1.5, 1.0], abs=1e-12)
    thesis = _params([3.0, 4.0])
    _step(BPGrad(thesis, lipschitz=1.0, rho=0.0, momentum=0.0, weight_decay=0.5), thesis, [[0.0, 1.0]], 1.0)
    # The thesis normalises g + 0.5 x = (1.5, 3): ||.|| = 1.5 sqrt(5).
    assert thesis[0].tolist() == pytest.approx([3.0 - 1 / math.sqrt(5), 4.0 - 2 / math.sqrt(5)], abs=1e-12)


OFFICIAL = {"eta_outside_momentum": True, "epoch_mean_loss": True, "norm_before_decay": True}


@pytest.mark.parametrize("options", [{}, OFFICIAL])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_foreach_and_per_tensor_paths_agree(options, momentum):
    torch.manual_seed(1)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    initial = [torch.randn(s) for s in shapes] + [torch.randn(5, dtype=torch.float64)]
    schedule = [([torch.randn_like(t) for t in initial], 2.0 + torch.rand(()).item()) for _ in range(6)]
    results = []
    for foreach in (True, False):
        params = [nn.Parameter(t.clone()) for t in initial]
        optimizer = BPGrad(
            [{"params": params[:2]}, {"params": params[2:], "lipschitz": 7.0}],
            lipschitz=3.0, momentum=momentum, weight_decay=1e-2, foreach=foreach, **options,
        )
        for grads, loss in schedule:
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            optimizer.step(loss=torch.tensor(loss))
        results.append(params)
    for p, q in zip(*results, strict=True):
        torch.testing.assert_close(p, q)


@contextmanager
def _no_host_reads():
    """Any Python-level read of a tensor's value raises: the step must stay on the device."""

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor value was read on the host during step()")

    names = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")
    with ExitStack() as stack:
        for name in names:
            stack.enter_context(mock.patch.object(torch.Tensor, name, refuse))
        yield


@pytest.mark.parametrize("foreach", [True, False])
def test_a_step_reads_nothing_back_to_the_host(foreach):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = BPGrad(model.parameters(), lipschitz=3.0, weight_decay=1e-3, foreach=foreach,
                       epoch_mean_loss=True, eta_outside_momentum=True)
    optimizer.start_epoch()
    loss = model(torch.randn(16, 6)).square().mean()
    loss.backward()
    with _no_host_reads():
        optimizer.step(loss=loss)
        for p in model.parameters():
            p.grad.zero_()
        optimizer.step(loss=loss.detach())  # and the zero-gradient branch
        bounds = optimizer.lower_bound, optimizer.upper_bound
    assert all(isinstance(b, torch.Tensor) and b.ndim == 0 for b in bounds)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for torch's sync debug mode")
def test_a_cuda_step_does_not_synchronise():
    model = nn.Linear(64, 64).cuda()
    optimizer = BPGrad(model.parameters(), lipschitz=3.0, weight_decay=1e-3, foreach=True)
    for _ in range(2):
        loss = model(torch.randn(8, 64, device="cuda")).square().mean()
        loss.backward()
        torch.cuda.set_sync_debug_mode("error")
        try:
            optimizer.step(loss=loss)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        optimizer.zero_grad()


def test_bpgrad_trains_a_regression():
    torch.manual_seed(0)
    data = torch.randn(256, 8)
    target = data @ torch.randn(8, 1) + 0.01 * torch.randn(256, 1)
    model = nn.Linear(8, 1)
    optimizer = BPGrad(model.parameters(), lipschitz=10.0, momentum=0.9)
    losses = []
    for _ in range(200):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(data), target)
        loss.backward()
        optimizer.step(loss=loss)
        losses.append(loss.item())
    assert losses[-1] < 0.02 * losses[0]
    assert optimizer.lower_bound.item() <= optimizer.upper_bound.item() == pytest.approx(min(losses))


def _x_sin_x(offset):
    return lambda x: x[0] * torch.sin(x[0]) + offset


def _bumpy_bowl(x):
    # |grad| <= sqrt(2) (1 + 0.4) < 2.5 on [-2, 2]^2; f >= 1.
    return torch.sin(x[0]) * torch.cos(x[1]) + 2 + 0.1 * x.square().sum()


def test_alg1_reproduces_fig_3_3():
    search = BPGradSearch(_x_sin_x(15.0), bounds=[(0, 4 * math.pi)], lipschitz=4 * math.pi, rho=0.1, x0=[2.5])
    result = search.run(max_iters=100)
    xs = result.history.x[:, 0]
    # The thesis: x_2 = 3.682 (downhill, right), x_5 = 1.27 (downhill, left), the best x_12 = 11.117,
    # the box covered within 16 iterations.
    assert xs[1].item() == pytest.approx(3.682, abs=1e-3)
    assert xs[4].item() == pytest.approx(1.27, abs=1e-2)
    assert result.covered and result.iterations <= 16
    assert result.best_iteration == 12
    assert result.x.item() == pytest.approx(11.117, abs=1e-3)
    assert abs(result.x.item() - 11.086) < 0.05
    assert result.lower == pytest.approx(0.1 * result.upper)


@pytest.mark.parametrize(
    ("f", "bounds", "lipschitz", "x0", "resolution"),
    [
        (_x_sin_x(15.0), [(0.0, 4 * math.pi)], 4 * math.pi, [2.5], 1e-4),
        (_x_sin_x(11.05), [(0.0, 4 * math.pi)], 4 * math.pi, [2.5], 1e-4),
        (_x_sin_x(4.815), [(0.0, 8.0)], 4 * math.pi, [2.5], 1e-4),
        (_bumpy_bowl, [(-2.0, 2.0), (-2.0, 2.0)], 2.5, [1.0, 1.0], 1e-3),
    ],
    ids=["f3", "f2", "f1", "2d"],
)
def test_alg1_obeys_theorems_1_and_2(f, bounds, lipschitz, x0, resolution):
    rho = 0.1
    search = BPGradSearch(f, bounds=bounds, lipschitz=lipschitz, rho=rho, x0=x0, resolution=resolution)
    result = search.run(max_iters=5000)
    assert result.covered
    # Theorem 2: T <= (2L / ((1 - rho) f_min))^d V / C.
    assert result.iterations <= sample_bound(lipschitz, rho, result.upper, search.volume, search.dim)
    # Eq. 3.10, from which it follows: samples are (1 - rho) f_min / L apart at least (a new sample sits
    # on a ball's edge, so equality holds up to the rounding of x + r).
    xs = result.history.x
    gaps = torch.cdist(xs, xs, compute_mode="donot_use_mm_for_euclid_dist")
    gaps.fill_diagonal_(math.inf)
    assert gaps.min().item() >= (1 - rho) * result.upper / lipschitz - 1e-12
    # Theorem 1: once the box is covered, rho min f <= f* <= min f (f*: a dense grid, then polished).
    grids = [torch.linspace(lo, hi, 2001 if len(bounds) == 1 else 401, dtype=torch.float64) for lo, hi in bounds]
    points = torch.cartesian_prod(*grids).reshape(-1, len(bounds))
    start = min(points, key=lambda point: f(point).item())
    polished = scipy.optimize.minimize(lambda x: f(torch.as_tensor(x)).item(), start.numpy(), bounds=bounds)
    f_star = min(polished.fun, f(start).item())
    assert result.lower <= f_star <= result.upper + 1e-9


def test_alg1_stops_at_its_budget_and_refuses_negative_f():
    result = BPGradSearch(_x_sin_x(11.05), bounds=[(0, 4 * math.pi)], lipschitz=4 * math.pi, x0=[2.5]).run(max_iters=10)
    assert result.iterations == 10 and not result.covered
    with pytest.raises(ValueError, match="f >= 0"):
        BPGradSearch(_x_sin_x(0.0), bounds=[(0, 4 * math.pi)], lipschitz=4 * math.pi, x0=[5.0]).run(max_iters=3)


def test_estimate_lipschitz_gives_a_distribution_and_a_percentile_l():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3))
    before = copy.deepcopy(model.state_dict())
    batches = [(torch.randn(20, 10), torch.randint(0, 3, (20,))) for _ in range(7)]
    estimate = estimate_lipschitz(model, nn.functional.cross_entropy, batches, copies=40, percentile=90, progress=False)
    assert len(estimate.ratios) == 40 * 39 // 2 and len(estimate.objectives) == 40
    assert bool(torch.isfinite(estimate.ratios).all()) and bool((estimate.ratios >= 0).all())
    assert bool((estimate.ratios[1:] >= estimate.ratios[:-1]).all())
    assert estimate.ratios[0] < estimate.suggested < estimate.ratios[-1]
    assert (estimate.ratios <= estimate.suggested).double().mean().item() == pytest.approx(0.9, abs=0.01)
    assert estimate.quantile(100) == estimate.ratios[-1].item()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)


def test_bpgrad_refuses_a_negative_loss_by_name():
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = BPGrad([parameter], lipschitz=1.0)
    loss = parameter.sum() - 10.0
    loss.backward()
    with pytest.raises(RuntimeError, match="never negative"):
        optimizer.step(loss=loss)


@pytest.mark.parametrize("foreach", [False, True])
def test_bpgrad_after_many_steps_of_zero_length_still_steps(foreach):
    # At a zero loss with rho = 0 every step has length 0 and the velocity's scale shrinks by mu each time,
    # down to where it would be 0 and its update 0 / 0.
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = BPGrad([parameter], lipschitz=1.0, momentum=0.5, rho=0.0, foreach=foreach)
    for _ in range(300):
        optimizer.zero_grad()
        loss = ((parameter - 1) ** 2).sum()
        loss.backward()
        optimizer.step(loss=loss)
    assert torch.equal(parameter.detach(), torch.ones(3))
    optimizer.zero_grad()
    loss = ((parameter - 2) ** 2).sum()  # f = 3, so one step of length f / L = 3 towards (2, 2, 2)
    loss.backward()
    optimizer.step(loss=loss)
    torch.testing.assert_close(parameter.detach(), torch.full((3,), 1 + 3 / 3**0.5))
