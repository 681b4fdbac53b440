from focus_crop_fraction import *
L=l2(A); c0,t0,v0=split(L); g0=np.concatenate([c0,t0])
Q=l2(cr["l0_0.7"])
print("== lite0 alone")
rep("train sel P1 none",t0@c0.T,pC,pT,grpT)
for f in [0.6,0.7,0.8]:
    rep(f"train sel P1 crop {f}",l2(cr[f"l0_{f}"])[:nT]@c0.T,pC,pT,grpT)
rep("val P1 none",v0@c0.T,pC,pV,grpV)
rep("val P1 crop .7",Q[nT:]@c0.T,pC,pV,grpV)
rep("val P2 none",v0@g0.T,gp,pV,grpV)
rep("val P2 crop .7 q+train",Q[nT:]@np.concatenate([c0,Q[:nT]]).T,gp,pV,grpV)
