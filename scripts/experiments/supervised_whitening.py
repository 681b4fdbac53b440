from protocols import *
def load(tag,flip=True):
    d=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+f"/{tag}.npz"); o=l2(d["orig"])
    return l2(o+l2(d["flip"])) if flip else o
Af=load("l0"); Sf=load("sscd")
F=l2(np.hstack([np.sqrt(.5)*Sf,np.sqrt(.5)*Af]))
def whiten_fit(X,y,reg,dims):
    mu=X.mean(0); Xc=X-mu
    cls=np.unique(y)
    means=np.stack([Xc[y==k].mean(0) for k in cls])
    W=Xc-means[np.searchsorted(cls,y)]
    Sw=W.T@W/len(X); 
    Sw+= reg*np.trace(Sw)/len(Sw)*np.eye(len(Sw))
    ev,evec=np.linalg.eigh(Sw)
    P=evec/np.sqrt(ev)          # Sw^-1/2
    M=means@P
    Sb=M.T@M/len(cls)
    e2,v2=np.linalg.eigh(Sb)
    v2=v2[:,::-1][:,:dims]
    return mu, P@v2
for E,name in [(Af,"l0f"),(F,"fused")]:
    c,t,v=split(E)
    g=np.concatenate([c,t]); gp=np.concatenate([pC,pT])
    fmt(name+" P2 base",metrics(v@g.T,gp))
    for reg in [0.01,0.1,0.3,1.0]:
        for dims in [80]:
            mu,P=whiten_fit(g,gp,reg,dims)
            pr=lambda X:l2((X-mu)@P)
            fmt(f"{name} P2 lda reg={reg} d={dims}",metrics(pr(v)@pr(g).T,gp))
