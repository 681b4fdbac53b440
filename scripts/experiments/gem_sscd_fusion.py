from protocols import *
def load(tag,flip=True):
    d=np.load(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+f"/{tag}.npz"); o=l2(d["orig"])
    return l2(o+l2(d["flip"])) if flip else o
A=load("l0",False); Af=load("l0"); G_=load("l0gem",False); Gf=load("l0gem"); S=load("sscd",False); Sf=load("sscd")
for n,E in [("gem",G_),("gem+flip",Gf),("sscd",S),("sscd+flip",Sf)]: P1P2(n,E)
for w in [0.5,0.6,0.7]:
    P1P2(f"sscd⊕gem w={w}", l2(np.hstack([np.sqrt(w)*S,np.sqrt(1-w)*G_])))
    P1P2(f"sscdf⊕gemf w={w}", l2(np.hstack([np.sqrt(w)*Sf,np.sqrt(1-w)*Gf])))
    P1P2(f"sscdf⊕l0f w={w}", l2(np.hstack([np.sqrt(w)*Sf,np.sqrt(1-w)*Af])))
