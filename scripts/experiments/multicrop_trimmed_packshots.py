from focus_crop_fraction import *
tr=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+"/trim.npz"); Ct=fuse(tr["sscd"],tr["l0"])
Q7=fuse(cr["sscd_0.7"],cr["l0_0.7"]); Q5=fuse(cr["sscd_0.5"],cr["l0_0.5"]); Q9=fuse(cr["sscd_0.9"],cr["l0_0.9"])
print("== multi-crop / trimmed catalog")
for nm,Qs in [("q crop .7",[Q7]),("max(.5,.7)",[Q5,Q7]),("max(.5,.7,.9)",[Q5,Q7,Q9]),("max(.7, orig)",[Q7,np.concatenate([t,v])])]:
    for cn,Cm in [("cat orig",c),("cat trimmed",Ct)]:
        for sel,sl,q,grp in [("train",slice(0,nT),pT,grpT),("val",slice(nT,None),pV,grpV)]:
            Sim=np.max([Q[sl]@Cm.T for Q in Qs],0)
            rep(f"{sel} {nm} {cn}",Sim,pC,q,grp)
