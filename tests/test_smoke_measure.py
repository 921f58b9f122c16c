"""The smoke suite's measurements against numbers worked out by hand, chosen so that a wrong factor cannot match."""

import math

import pytest

from smoke_tests import allreduce, cudnn, measure
from smoke_tests.measure import Conv


@pytest.mark.parametrize("conv, out_size, flops", [
    # ResNet-50's stem, 7x7/2 with padding 3: 224 -> 112; 2 * 64 * 3 * 7 * 7 * 112 * 112 (118.0 M multiply-adds)
    (Conv(3, 64, 7, 2, 224, ("conv1",)), 112, 236_027_904),
    # a stride-2 3x3 with padding 1: 56 -> 28; 2 * 128 * 128 * 9 * 28 * 28
    (Conv(128, 128, 3, 2, 56, ("layer2.0.conv2",)), 28, 231_211_008),
    # a stride-2 1x1 projection, no padding: 56 -> 28; 2 * 512 * 256 * 28 * 28
    (Conv(256, 512, 1, 2, 56, ("layer2.0.downsample.0",)), 28, 205_520_896),
    # a 1x1 at stride 1 keeps the size: 2 * 256 * 64 * 56 * 56
    (Conv(64, 256, 1, 1, 56, ("layer1.0.conv3",)), 56, 102_760_448),
    # a 3x3 at stride 1 on the smallest map: 2 * 512 * 512 * 9 * 7 * 7
    (Conv(512, 512, 3, 1, 7, ("layer4.1.conv2",)), 7, 231_211_008),
])
def test_conv_flops_of_single_layers(conv, out_size, flops):
    assert conv.out_size == out_size
    assert measure.conv_flops(conv, 1) == flops
    assert measure.conv_flops(conv, 128) == 128 * flops


def test_resnet50s_convolutions_add_up_to_its_published_4_09_gmacs():
    """torchvision's resnet50: 4.09 G multiply-adds at 224 x 224, of which the final 2048 x 1000 linear layer is
    2.048 M; the 53 convolutions are the rest: 4,087,136,256 multiply-adds."""
    layers = [name for conv in cudnn.RESNET50_CONVS for name in conv.layers]
    assert len(layers) == len(set(layers)) == 53 and len(cudnn.RESNET50_CONVS) == 23
    total = sum(measure.conv_flops(conv, 1) * len(conv.layers) for conv in cudnn.RESNET50_CONVS)
    assert total == 2 * 4_087_136_256
    strided = {conv.layers[0] for conv in cudnn.RESNET50_CONVS if conv.stride == 2}
    assert strided == {"conv1", "layer2.0.conv2", "layer2.0.downsample.0", "layer3.0.conv2",
                       "layer3.0.downsample.0", "layer4.0.conv2", "layer4.0.downsample.0"}


def test_matmul_flops_and_tflops():
    assert measure.matmul_flops(8192, 8192, 8192) == 2**40  # 2 * 8192^3
    assert measure.matmul_flops(2, 3, 5) == 60
    # 2^40 FLOPs in 1 ms; compared to the last digits (a factor of 1 + 1e-12 is still a wrong factor)
    assert measure.tflops(2**40, 1.0) == pytest.approx(1099.511627776, rel=1e-14)
    assert measure.tflops(236_027_904 * 128, 0.25) == pytest.approx(120.846286848, rel=1e-14)


def test_algbw_is_bytes_over_seconds_in_gb_per_s():
    assert measure.algbw_gbs(256 * 2**20, 0.1) == pytest.approx(2.68435456, rel=1e-14)
    assert measure.algbw_gbs(2**20, 25e-6) == pytest.approx(41.94304, rel=1e-14)


@pytest.mark.parametrize("world, factor, expected_sum", [(1, 0.0, 1), (2, 1.0, 3), (4, 1.5, 10), (8, 1.75, 36)])
def test_busbw_is_algbw_times_2_n_minus_1_over_n(world, factor, expected_sum):
    """nccl-tests' all-reduce factor. At n = 2 it equals n - 1 and n / 2 too; 4 and 8 tell them apart
    (n - 1: 3 and 7; n / 2: 2 and 4; (n - 1) / n: 0.75 and 0.875)."""
    assert measure.allreduce_bus_factor(world) == factor
    assert measure.busbw_gbs(10.0, world) == pytest.approx(10.0 * factor)
    sum_ = measure.allreduce_sum(world)  # ranks contribute 1, 2, …, n
    assert sum_ == expected_sum and type(sum_) is int  # an integer in the report, as the elements are


@pytest.mark.parametrize("ranks, first_rank, expected_sum", [(2, 0, 3), (2, 2, 7), (4, 4, 26), (8, 8, 100), (1, 5, 6)])
def test_a_nodes_own_all_reduce_sums_its_ranks_contributions(ranks, first_rank, expected_sum):
    """One node's ranks first_rank … first_rank + ranks - 1 contribute first_rank + 1 … first_rank + ranks
    (2 ranks from 2: 3 + 4; 4 from 4: 5 + 6 + 7 + 8; 8 from 8: 9 + … + 16; 1 from 5: 6)."""
    sum_ = measure.allreduce_sum(ranks, first_rank)
    assert sum_ == expected_sum and type(sum_) is int


def test_steady_state_images_per_s_leaves_the_warm_up_steps_out():
    step_ms = [500.0, 400.0, 300.0, 100.0, 100.0, 100.0, 100.0]
    assert measure.images_per_s(step_ms, batch=16, warmup=3) == pytest.approx(160.0)  # 4 x 16 images in 0.4 s
    assert measure.images_per_s(step_ms, batch=16, warmup=0) == pytest.approx(70.0)  # what counting them gives
    assert measure.images_per_s([250.0, 50.0, 80.0], batch=8, warmup=1) == pytest.approx(123.07692307692308)
    assert measure.images_per_s(step_ms[:3], batch=16, warmup=3) is None  # nothing left to time


def test_chance_loss_is_the_entropy_of_the_class_frequencies():
    assert measure.chance_loss([24] * 10) == pytest.approx(math.log(10))
    assert measure.chance_loss([3, 1]) == pytest.approx(0.5623351446188083)  # -(3/4 ln 3/4 + 1/4 ln 1/4)
    assert measure.chance_loss([4, 0, 4]) == pytest.approx(math.log(2))  # an empty class is no outcome
    assert measure.chance_loss([7]) == 0.0


class Recorder:
    """A fake device and clock: calls advance the clock by their cost; every call, sync, mark and read is logged."""

    def __init__(self, costs_ms):
        self.costs = list(costs_ms)
        self.now = 0.0
        self.log = []
        self.timer = measure.Timer(self.mark, self.elapsed, self.sync)

    def call(self):
        self.log.append("call")
        self.now += self.costs.pop(0)

    def mark(self):
        self.log.append("mark")
        return self.now

    def elapsed(self, start, end):
        self.log.append("read")
        return end - start

    def sync(self):
        self.log.append("sync")


def test_time_calls_warms_up_then_times_between_two_synchronised_marks():
    fake = Recorder([90.0, 50.0, 30.0, 2.0, 3.0, 4.0, 3.0])  # slow warm-up calls (autotuning), then steady ones
    assert measure.time_calls(fake.call, repeats=4, warmup=3, timer=fake.timer) == pytest.approx(3.0)
    assert fake.log == ["call"] * 3 + ["sync", "mark"] + ["call"] * 4 + ["mark", "sync", "read"]


def test_time_steps_marks_between_steps_and_reads_after_one_sync():
    fake = Recorder([40.0, 12.0, 10.0, 11.0])
    assert measure.time_steps(fake.call, 4, fake.timer) == [40.0, 12.0, 10.0, 11.0]
    assert fake.log == ["mark"] + ["call", "mark"] * 4 + ["sync"] + ["read"] * 4


def rows(world, **wrong):
    expected = measure.allreduce_sum(world)
    made = [{"size_mib": mib, "time_us": 100.0 * mib, "algbw_gbs": 10.49, "busbw_gbs": 10.49,
             "min": expected, "max": expected, "expected": expected} for mib in (1, 4, 16)]
    made[1].update(wrong)
    return made


def test_the_all_reduce_passes_only_with_every_sum_exact():
    assert allreduce._judge("gloo all-reduce", "gloo", 2, rows(2)).status == "PASS"
    short = allreduce._judge("gloo all-reduce", "gloo", 2, rows(2, min=2.0))
    assert short.status == "FAIL" and short.reason == "4 MiB: all-reduce gave 2 where the exact sum is 3 (elements from 2 to 3)"
    over = allreduce._judge("nccl all-reduce", "nccl", 4, rows(4, max=11.0))
    assert over.status == "FAIL" and "gave 11 where the exact sum is 10" in over.reason
    assert allreduce._judge("nccl all-reduce", "nccl", 4, rows(4, min=math.nan, max=math.nan)).status == "FAIL"


def test_one_rank_says_its_bandwidths_mean_nothing():
    result = allreduce._judge("nccl all-reduce", "nccl", 1, rows(1))
    assert result.status == "PASS" and "algbw and busbw are not meaningful" in result.reason
    result = allreduce._judge("gloo all-reduce", "gloo", 2, rows(2))
    assert result.reason.endswith("16 MiB: algbw 10.5 GB/s, busbw 10.5 GB/s")


def test_every_fine_tune_leaves_warm_up_steps_out_of_its_images_per_s():
    """Its first steps autotune cuDNN, grow the allocator and start the loader's workers (train() passes
    sizes.warmup to images_per_s; smoke_tests/test_suite.py proves that on a real training loop)."""
    from smoke_tests import finetune

    for sizes in [*finetune.GPU_SIZES.values(), *finetune.CPU_SIZES.values()]:
        assert 1 <= sizes.warmup and sizes.steps - sizes.warmup >= 2 * 5
