"""Result keys as constants (STYLE habit 2): protocols, the store, tests and the leaderboard
import these instead of retyping strings.  ``DIRECTION`` says which way is better."""

BPD = "bpd"                  # held-out bits/dim, ELBO (single-sample) bound
BPD_CONTENT = "bpd_content"  # BPD per dimension of the unpadded content (Fashion-MNIST: 28x28 of the 32x32 input)
BPD_IW = "bpd_iw"            # held-out bits/dim, importance-weighted bound (K in extra)
IS = "is"                    # Inception score (Eq. 14), mean over 10 splits
IS_STD = "is_std"            # its std over splits
FID = "fid"                  # Frechet distance (Eq. 15)
KID = "kid"                  # kernel inception distance (raw, not x1e3)
PRD_F8 = "prd_f8"            # Sajjadi et al. F_8 (recall-like)
PRD_F1_8 = "prd_f1_8"        # Sajjadi et al. F_1/8 (precision-like)
PRD_AUC = "prd_auc"          # area under the PRD curve (definition in metrics/prd.py)
PRECISION = "precision"      # Kynkaanniemi/Naeem improved precision (prdc, k=5)
RECALL = "recall"
DENSITY = "density"          # Naeem et al. density (prdc, k=5)
COVERAGE = "coverage"
GAN_TRAIN = "gan_train"      # accuracy (%) on real held-out of a classifier trained on samples
GAN_TEST = "gan_test"        # accuracy (%) on samples of a classifier trained on real data
REAL_BASELINE = "real_to_real"  # accuracy (%) on real held-out of a classifier trained on real data
FID_MEAN = "fid_mean"         # FID of a latent-variable model's samples decoded with the decoder's mean
FID_NOISE = "fid_noise"       # ... with the decoder's noise added (x = f^-1(mu + sigma eps)); "fid" is the model's own
FID_AT_STEPS = "fid@{}steps"     # FID of a sampler run with that many steps (the diffusion steps-vs-FID curve)
SAMPLES_PER_S = "samples_per_s"  # sampling throughput on the machine that ran the cell (extra: device, batch)
SPEED_VS_GAN = "speed_vs_gan"    # samples/s divided by the GAN's samples/s measured in the same process
NFE = "nfe"                      # network evaluations per sample (1 for one feed-forward pass)
CLASS_KL = "class_kl"            # KL(sample class shares || real class shares) under the domain classifier (nats)
CLASSES_LOW = "classes_low"      # classes whose sample share is below half their real share (metrics/classes.py)
KL_PER_IMAGE = "kl"              # KL(q(z|x) || p(z)) of the held-out images, nats per image (latent usage)
# any feature space (the row's extractor says which), issue 36: metrics/mmd.py, vendi.py, fld.py, memorization.py
MMD = "mmd"                      # 1000 x MMD^2, RBF sigma 10 on L2-normalised features (CMMD's estimator)
CMMD = "cmmd"                    # the same on CLIP ViT-L/14@336 embeddings: CMMD (Jayasumana et al. 2024)
VENDI = "vendi"                  # Vendi score of the samples, cosine kernel (effective number of distinct samples)
FLD = "fld"                      # feature likelihood divergence (Jiralerspong et al. 2023)
FLD_GAP = "fld_gap"              # 100 x (train NLL - test NLL) under FLD's mixture: ~0 good, << 0 memorised
AUTHPCT = "authpct"              # % of samples farther from the training set than its own nearest neighbours
C_T = "ct"                       # Meehan et al. C_T: << 0 copies the training set, >> 0 underfits, ~0 right
BPD_GAP = "bpd_gap"              # held-out BPD - training BPD (same count, same bound): > 0 = overfitting

HIGHER_IS_BETTER = {IS, PRD_F8, PRD_F1_8, PRD_AUC, PRECISION, RECALL, DENSITY, COVERAGE, GAN_TRAIN, GAN_TEST,
                    REAL_BASELINE, SAMPLES_PER_S, SPEED_VS_GAN}
LOWER_IS_BETTER = {BPD, BPD_CONTENT, BPD_IW, FID, FID_MEAN, FID_NOISE, KID, IS_STD, NFE, CLASS_KL, CLASSES_LOW}
HIGHER_IS_BETTER |= {VENDI, AUTHPCT, FLD_GAP}
LOWER_IS_BETTER |= {MMD, CMMD, FLD, BPD_GAP}
NO_DIRECTION = {C_T}             # near zero is right (not in DIRECTION: direction() gives '')
DIRECTION = {**{k: "higher" for k in HIGHER_IS_BETTER}, **{k: "lower" for k in LOWER_IS_BETTER}}
#: the fewest seeds per model a claim's verdict is read from (protocols.claims; stated on the leaderboard page)
MIN_SEEDS = 3


def fid_at_steps(steps: int) -> str:
    return FID_AT_STEPS.format(int(steps))


def direction(metric: str) -> str:
    """'higher' or 'lower' (which way is better); '' for a key this module does not know."""
    if metric in DIRECTION:
        return DIRECTION[metric]
    return "lower" if metric.startswith("fid@") and metric.endswith("steps") else ""
