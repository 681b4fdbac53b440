import sys, os, csv, tomllib, numpy as np, onnxruntime as ort, random
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),".."))
from reference_embed import load_rgb, preprocess
from PIL import Image, ImageOps, ImageEnhance, ImageFilter
G=os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../../shared/data/grocery")
C=list(csv.DictReader(open(G+"/catalog.csv"))); V=list(csv.DictReader(open(G+"/photos-val.csv")))
rng=random.Random(0)
def aug(im):
    w,h=im.size
    s=rng.uniform(0.55,1.0); cw,ch=int(w*s*rng.uniform(0.85,1.15)),int(h*s)
    cw=min(cw,w); x=rng.randint(0,w-cw); y=rng.randint(0,h-ch)
    im=im.crop((x,y,x+cw,y+ch))
    im=im.rotate(rng.uniform(-12,12),resample=Image.BILINEAR,expand=True,fillcolor=tuple(rng.randint(60,200) for _ in range(3)))
    im=ImageEnhance.Brightness(im).enhance(rng.uniform(0.6,1.3))
    im=ImageEnhance.Contrast(im).enhance(rng.uniform(0.7,1.3))
    im=ImageEnhance.Color(im).enhance(rng.uniform(0.7,1.3))
    if rng.random()<0.5: im=im.filter(ImageFilter.GaussianBlur(rng.uniform(0.5,2.0)))
    return im
N=int(sys.argv[1])
imgs=[]; labels=[]
for i,r in enumerate(C):
    base=load_rgb(os.path.join(G,r["image"]))
    for k in range(N): imgs.append(aug(base)); labels.append(i)
crop=[]
for r in V:
    im=load_rgb(os.path.join(G,r["image"])); w,h=im.size; f=0.7
    crop.append(im.crop((int(w*(1-f)/2),int(h*(1-f)/2),int(w*(1+f)/2),int(h*(1+f)/2))))
out={}
for tag,mdir in [("l0",os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../models/")+"efficientnet-lite0"),("sscd",os.path.join(os.path.dirname(os.path.abspath(__file__)),"../../models/")+"sscd-distilled")]:
    m=tomllib.load(open(mdir+"/model.toml","rb")); spec=m["input"]
    so=ort.SessionOptions(); so.intra_op_num_threads=2
    sess=ort.InferenceSession(os.path.join(mdir,m["file"]),so,providers=["CPUExecutionProvider"])
    for name,L in [("aug",imgs),("crop",crop)]:
        E=[]
        for i in range(0,len(L),16):
            x=np.stack([preprocess(im,spec) for im in L[i:i+16]])
            E.append(sess.run([m["output"]["name"]],{spec["name"]:x})[0].reshape(len(x),-1))
        out[f"{tag}_{name}"]=np.concatenate(E)
np.savez(os.environ.get("EXP_DIR","/tmp/knockoff-exp")+"/aug.npz",labels=np.array(labels),**out)
