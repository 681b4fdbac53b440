from focus_crop_fraction import *
cc=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+"/crops_cat.npz")
print("== crop everything (catalog too)")
for f in [0.6,0.7,0.8]:
    Q=fuse(cr[f"sscd_{f}"],cr[f"l0_{f}"]); Cc=fuse(cc[f"sscd_{f}"],cc[f"l0_{f}"])
    rep(f"train sel P1 crop all {f}",Q[:nT]@Cc.T,pC,pT,grpT)
    rep(f"val P1 crop all {f}",Q[nT:]@Cc.T,pC,pV,grpV)
    g2=np.concatenate([Cc,Q[:nT]]); rep(f"val P2 crop all {f}",Q[nT:]@g2.T,gp,pV,grpV)
