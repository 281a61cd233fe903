"""The independent event classifier: trained on fresh bank draws, it must recognise every class."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from audiostory_cli.errors import InputError, ModelError
from audiostory_cli.foley.bank import CLASS_NAMES, EventParams, render_event
from audiostory_cli.foley.classifier import (
    FEATURE_NAMES,
    EventClassifier,
    accuracy_per_class,
    bank_draws,
    extract_features,
    train_classifier,
)


@pytest.fixture(scope="module")
def trained() -> tuple[EventClassifier, float]:
    start = time.perf_counter()
    clf = train_classifier(sr=16_000, seed=0)
    return clf, time.perf_counter() - start


def test_every_class_is_recognised_on_fresh_draws(trained):
    clf, seconds = trained
    x, y = bank_draws(16_000, 20, seed=1)  # other seed than training: unseen params, durations and noise
    accuracy = accuracy_per_class(clf, x, y)
    assert set(accuracy) == set(CLASS_NAMES)
    low = {name: acc for name, acc in accuracy.items() if acc < 0.95}
    assert not low, f"classes below 95 %: {low} (training took {seconds:.1f} s)"
    assert clf.info["train_accuracy"] >= 0.98


def test_renders_at_44k_are_recognised(trained):
    clf, _ = trained
    x, y = bank_draws(44_100, 1, seed=2)
    pred = np.argmax(clf.proba_from_features(x), axis=1)
    assert np.mean(pred == y) >= 0.9


def test_predict_returns_a_class_and_a_probability(trained):
    clf, _ = trained
    audio = render_event("siren", EventParams(), 2.0, 16_000, seed=3)
    name, confidence = clf.predict(audio, 16_000)
    assert name == "siren" and 0.5 < confidence <= 1.0
    proba = clf.predict_proba(audio[0], 16_000)  # mono works too
    assert proba.shape == (len(CLASS_NAMES),) and proba.sum() == pytest.approx(1.0)


def test_save_load_round_trip_is_json(trained, tmp_path):
    clf, _ = trained
    path = clf.save(tmp_path / "clf.json")
    data = json.loads(path.read_text())
    assert data["format"] == "audiostory-foley-classifier" and data["classes"] == list(CLASS_NAMES)
    loaded = EventClassifier.load(path)
    audio = render_event("bell", EventParams(), 1.5, 16_000, seed=4)
    np.testing.assert_allclose(loaded.predict_proba(audio, 16_000), clf.predict_proba(audio, 16_000))
    assert loaded.info == clf.info


def test_load_rejects_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        EventClassifier.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        EventClassifier.load(bad)
    bad.write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(ModelError, match="not a version"):
        EventClassifier.load(bad)


def test_load_rejects_mismatched_shapes(trained, tmp_path):
    clf, _ = trained
    data = clf.to_dict()
    data["mean"] = data["mean"][:-1]
    path = tmp_path / "short.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="does not match"):
        EventClassifier.load(path)


def test_features_are_named_finite_and_rate_independent():
    audio = render_event("water_stream", EventParams(), 2.0, 16_000, seed=1)
    feats = extract_features(audio, 16_000)
    assert feats.shape == (len(FEATURE_NAMES),) and np.isfinite(feats).all()
    assert np.isfinite(extract_features(np.zeros(100), 16_000)).all()  # silence, shorter than a frame
    assert np.isfinite(extract_features(np.ones((2, 3000)) * 0.1, 44_100)).all()


def test_features_reject_unusable_audio():
    with pytest.raises(InputError):
        extract_features(np.zeros((2, 2, 10)), 16_000)
    with pytest.raises(InputError):
        extract_features(np.array([0.0, np.nan, 0.0]), 16_000)


def test_bank_draws_are_deterministic():
    a = bank_draws(16_000, 1, seed=3)
    b = bank_draws(16_000, 1, seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], np.arange(len(CLASS_NAMES)))


def test_load_or_train_caches_by_settings(tmp_path, monkeypatch):
    from audiostory_cli.foley import classifier as module

    path = tmp_path / "clf.json"
    first = module.load_or_train(path, n_per_class=1, seed=4)
    assert path.exists() and first.info["n_per_class"] == 1 and first.info["bank"] == module.bank_fingerprint()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been reused")

    monkeypatch.setattr(module, "train_classifier", no_training)
    again = module.load_or_train(path, n_per_class=1, seed=4)
    np.testing.assert_array_equal(again.weights, first.weights)
    with pytest.raises(AssertionError, match="reused"):
        module.load_or_train(path, n_per_class=1, seed=5)  # other settings: retrains
    assert module.default_classifier_path().is_relative_to(tmp_path)  # the test's isolated cache
