"""Claims know the noise: reproduced / not reproduced only when the evidence can decide, otherwise inconclusive
with the reason."""
from metrics import keys as K
from protocols.claims import FLOOR, Values, all_of, beats, between, falls_with, faster


def _check(claim, values):
    status, evidence = claim.check(values)
    return status, evidence.get("why_inconclusive", [])


def test_separated_seed_ranges_decide_both_ways():
    v = Values({"a": {K.FID: [1.0, 1.2, 1.1]}, "b": {K.FID: [2.0, 2.1, 2.2]}})
    assert _check(beats("a", "b", K.FID), v) == ("reproduced", [])
    assert _check(beats("b", "a", K.FID), v) == ("not reproduced", [])
    v = Values({"a": {K.IS: [9.0, 9.5, 9.2]}, "b": {K.IS: [7.0, 7.2, 7.1]}})      # higher is better for IS
    assert _check(beats("a", "b", K.IS), v)[0] == "reproduced"


def test_overlapping_seeds_are_inconclusive_with_the_reason():
    v = Values({"a": {K.FID: [1.0, 2.5, 1.2]}, "b": {K.FID: [2.0, 2.1, 2.2]}})
    status, why = _check(beats("a", "b", K.FID), v)
    assert status == "inconclusive" and "differ by less than their spread over seeds" in why[0]


def test_one_seed_is_too_thin_whatever_the_values():
    v = Values({"a": {K.FID: [1.0]}, "b": {K.FID: [9.0, 9.1]}})
    status, why = _check(beats("a", "b", K.FID), v)
    assert status == "inconclusive" and "one seed of a" in why[0]


def test_two_seeds_are_too_few_even_when_their_ranges_separate():
    """Separated ranges of 2 and 2 seeds happen by chance 1 time in 6; a verdict needs 3 seeds per model."""
    v = Values({"a": {K.FID: [1.0, 1.2]}, "b": {K.FID: [2.0, 2.1, 2.2]}})
    status, why = _check(beats("a", "b", K.FID), v)
    assert status == "inconclusive" and "2 seeds of a: a verdict needs 3 per model" in why[0]
    assert "1 time in 10" in why[0]                     # C(5, 2): 2 against 3 seeds
    v["a"][K.FID].append(1.1)
    assert _check(beats("a", "b", K.FID), v) == ("reproduced", [])


def test_fid_from_fewer_samples_than_dimensions_is_too_thin():
    v = Values({"a": {K.FID: [10.0, 11.0, 10.5]}, "b": {K.FID: [90.0, 95.0, 92.0]}},
               meta={("a", K.FID): {"n": 64, "dim": 2048}, ("b", K.FID): {"n": 64, "dim": 2048}})
    status, why = _check(beats("a", "b", K.FID), v)
    assert status == "inconclusive" and "64 samples of 2048-d features" in why[0]
    v.meta = {("a", K.FID): {"n": 5000, "dim": 2048}, ("b", K.FID): {"n": 5000, "dim": 2048}}
    assert _check(beats("a", "b", K.FID), v)[0] == "reproduced"


def test_models_inside_the_real_floor_noise_are_tied():
    v = Values({"a": {K.FID: [0.95, 0.97, 0.96]}, "b": {K.FID: [1.05, 1.07, 1.06]}, FLOOR: {K.FID: [0.9, 1.1]}})
    status, why = _check(beats("a", "b", K.FID), v)
    assert status == "inconclusive" and "real-data floor" in why[0]
    v[FLOOR][K.FID] = [0.50, 0.52]            # a tight floor far below both: the difference is real
    assert _check(beats("a", "b", K.FID), v)[0] == "reproduced"


def test_compound_claims_combine_and_collect_reasons():
    v = Values({"gan": {K.FID: [1.0, 1.1, 1.2], K.BPD: [4.0, 4.1, 4.2]}, "vae": {K.FID: [5.0, 5.2, 5.1], K.BPD: [3.0]}})
    c = all_of("x", "gan beats vae on FID and loses on BPD", beats("gan", "vae", K.FID), beats("vae", "gan", K.BPD))
    status, why = _check(c, v)
    assert status == "inconclusive" and any("one seed of vae" in w for w in why)
    v["mid"] = {K.FID: [3.0, 3.1, 3.2]}
    assert _check(between("mid", "vae", "gan", K.FID, text="t", cid="c"), v)[0] == "reproduced"
    v["vae"][K.BPD] = [4.5, 4.6, 4.7]
    assert _check(c, v)[0] == "not reproduced"


def test_speed_and_curve_claims_need_three_seeds_too():
    v = Values({"a": {K.SAMPLES_PER_S: [100.0, 110.0]}, "b": {K.SAMPLES_PER_S: [5.0, 5.5, 6.0]}})
    c = faster("a", "b", 10.0, K.SAMPLES_PER_S, text="t", cid="c")
    status, why = _check(c, v)
    assert status == "inconclusive" and "2 seeds of a: a verdict needs 3 per model" in why[0]
    v["a"][K.SAMPLES_PER_S].append(105.0)
    assert _check(c, v)[0] == "reproduced"
    curve = {"fid@10steps": [9.0, 9.5], "fid@25steps": [7.0, 7.1, 7.2], K.FID: [5.0, 5.1, 5.2]}
    c = falls_with("m", list(curve), text="t", cid="c")
    status, why = _check(c, Values({"m": curve}))
    assert status == "inconclusive" and "2 seeds of m: a verdict needs 3 at every point" in why[0]
    curve["fid@10steps"].append(9.2)
    assert _check(c, Values({"m": curve}))[0] == "reproduced"
    curve[K.FID] = [8.0, 8.1, 8.2]                              # rises again after 25 steps
    assert _check(c, Values({"m": curve}))[0] == "not reproduced"
