import numpy as np, csv, os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),".."))
from reference_embed import load_rgb
G=os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../../shared/data/grocery")
def plain(im, band=0.04, tol=24):
    a=np.asarray(im.resize((128,128)),dtype=np.int16); b=max(1,int(128*band))
    border=np.concatenate([a[:b].reshape(-1,3),a[-b:].reshape(-1,3),a[:,:b].reshape(-1,3),a[:,-b:].reshape(-1,3)])
    med=np.median(border,0); frac=(np.abs(border-med).max(1)<=tol).mean()
    return frac
for k in ["catalog","photos-val"]:
    rows=list(csv.DictReader(open(f"{G}/{k}.csv")))
    fr=np.array([plain(load_rgb(os.path.join(G,r["image"]))) for r in rows])
    print(k, np.percentile(fr,[0,5,25,50,75,95,100]).round(2))
